"""Which checkpoint a resumed trial goes on from, and what counts as a whole checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from pyarrow import fs

from raytune_ft.sweep.trial_checkpoints import KEEP, RESULT_FILE, Persisted, choose, persisted
from raytune_ft.train.manifest import MANIFEST, is_whole, write_manifest

LOCAL = fs.LocalFileSystem()


def checkpoint(folder: Path, rank: int = 0, world: int = 1) -> Path:
    (folder / "deepspeed" / "state").mkdir(parents=True, exist_ok=True)
    (folder / "deepspeed" / "latest").write_text("state")
    (folder / "deepspeed" / "state" / f"rank{rank}_optim_states.pt").write_bytes(b"x" * 100)
    write_manifest(folder, rank, world)
    return folder


def test_a_checkpoint_with_every_listed_file_at_its_size_is_whole(tmp_path: Path) -> None:
    assert is_whole(LOCAL, str(checkpoint(tmp_path / "c")))
    listed = json.loads((tmp_path / "c" / MANIFEST.format(rank=0)).read_text())["files"]
    assert listed == {"deepspeed/latest": 5, "deepspeed/state/rank0_optim_states.pt": 100}


def test_a_missing_or_cut_file_makes_a_checkpoint_not_whole(tmp_path: Path) -> None:
    cut = checkpoint(tmp_path / "cut")
    (cut / "deepspeed" / "state" / "rank0_optim_states.pt").write_bytes(b"x" * 10)
    gone = checkpoint(tmp_path / "gone")
    (gone / "deepspeed" / "latest").unlink()
    assert not is_whole(LOCAL, str(cut))
    assert not is_whole(LOCAL, str(gone))
    assert not is_whole(LOCAL, str(tmp_path / "never-written"))


def test_every_rank_must_have_left_its_manifest(tmp_path: Path) -> None:
    folder = checkpoint(tmp_path / "c", rank=0, world=2)
    assert not is_whole(LOCAL, str(folder))
    checkpoint(folder, rank=1, world=2)
    assert is_whole(LOCAL, str(folder))


def test_an_older_checkpoint_without_a_manifest_is_whole_when_it_holds_files(
    tmp_path: Path,
) -> None:
    (tmp_path / "old").mkdir()
    assert not is_whole(LOCAL, str(tmp_path / "old"))
    (tmp_path / "old" / "state.json").write_text("{}")
    assert is_whole(LOCAL, str(tmp_path / "old"))


def test_persisted_lists_whole_checkpoints_whose_result_is_known(tmp_path: Path) -> None:
    trial = tmp_path / "trial"
    for index in range(5):
        checkpoint(trial / f"checkpoint_{index:06d}")
    (trial / "checkpoint_000003" / "deepspeed" / "latest").unlink()  # half deleted
    # Tune's log lags (it is uploaded with each snapshot): checkpoint_000004's result is only
    # in the copy the trial wrote into it; checkpoint_000001 has neither.
    (trial / "checkpoint_000004" / RESULT_FILE).write_text('{"training_iteration": 5}')
    rows = [
        {"training_iteration": 1, "checkpoint_dir_name": "checkpoint_000000"},
        {"training_iteration": 3, "checkpoint_dir_name": "checkpoint_000002"},
        {"training_iteration": 4, "checkpoint_dir_name": "checkpoint_000003"},
        ["not", "a", "row"],
    ]
    lines = [json.dumps(row) for row in rows]
    (trial / "result.json").write_text("\n".join(lines) + '\n{"training_iter')
    found, folders = persisted(LOCAL, str(trial))
    assert [(p.index, p.metrics["training_iteration"]) for p in found] == [(0, 1), (2, 3), (4, 5)]
    assert sorted(folders) == [0, 1, 2, 3, 4]
    assert persisted(LOCAL, str(tmp_path / "no-trial")) == ([], {})


def test_a_malformed_manifest_makes_a_checkpoint_not_whole_instead_of_failing(
    tmp_path: Path,
) -> None:
    for body in ("[1, 2]", '{"rank": 0}', '{"rank": "0", "world": 1, "files": {}}', "{"):
        folder = checkpoint(tmp_path / f"c{len(body)}")
        (folder / MANIFEST.format(rank=0)).write_text(body)
        assert not is_whole(LOCAL, str(folder)), body


def own(*indices: int) -> list[Persisted]:
    return [Persisted(i, f"/t/trial/checkpoint_{i:06d}", {}) for i in indices]


def test_a_named_whole_checkpoint_is_kept_unless_a_newer_one_of_its_own_is_there() -> None:
    named = "/t/trial/checkpoint_000002"
    assert choose(named, True, own(1, 2), "/t/trial", prefer_newest=True) == KEEP
    assert choose(named, True, own(2, 3), "/t/trial", prefer_newest=True) == own(3)[0]
    # Under PBT/PB2 the snapshot's choice stands (the trial's config may have changed since).
    assert choose(named, True, own(2, 3), "/t/trial", prefer_newest=False) == KEEP


def test_a_gone_checkpoint_falls_back_to_the_newest_whole_one_else_the_start() -> None:
    named = "/t/trial/checkpoint_000003"
    assert choose(named, False, own(1, 2), "/t/trial", prefer_newest=False) == own(2)[0]
    assert choose(named, False, [], "/t/trial", prefer_newest=True) is None


def test_a_trial_that_named_none_goes_on_from_its_newest() -> None:
    assert choose(None, False, own(0, 1), "/t/trial", prefer_newest=False) == own(1)[0]
    assert choose(None, False, [], "/t/trial", prefer_newest=True) == KEEP


def test_another_trials_whole_checkpoint_is_kept() -> None:
    """PBT's exploit: the named checkpoint is the donor's, in another trial's folder."""
    donor = "/t/donor/checkpoint_000009"
    assert choose(donor, True, own(1, 2), "/t/trial", prefer_newest=True) == KEEP
