"""`raytune-ft submit` without Ray: what is uploaded, what is refused, ids, addresses, tokens."""

from __future__ import annotations

import re
import shlex
from datetime import datetime
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.errors import UserError
from raytune_ft.spec import load_spec
from raytune_ft.submit.client import Address, auth_failed, resolve_address, resolve_token
from raytune_ft.submit.ignore import kept_files
from raytune_ft.submit.jobs import entrypoint, runtime_env, submission_id
from raytune_ft.submit.upload import check_storage, plan_upload

runner = CliRunner()
DASHBOARD = "http://127.0.0.1:8265"


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def project(root: Path, data: str = "data/train.tsv", **sections: object) -> Path:
    """A working folder with a spec at exp/spec.yaml reading `data` (relative to the spec)."""
    tree(root, {"exp/data/train.tsv": "text\tlabel\ngood\t1\nbad\t0\n", "code.py": "x = 1\n"})
    spec = {
        "name": "demo",
        "model": {"name_or_path": "all-MiniLM-L6-v2"},
        "data": {"train": {"path": data}},
        "storage": {"path": "/mnt/shared/runs"},
        **sections,
    }
    (root / "exp" / "spec.yaml").write_text(yaml.safe_dump(spec))
    return root / "exp" / "spec.yaml"


def plan_for(spec_path: Path, root: Path, excludes: list[str] | None = None, sets=None):
    spec = load_spec(spec_path, sets or [])
    return plan_upload(spec, spec_path, sets or [], root, excludes or [])


# --------------------------------------------------------------------------- .gitignore


def test_gitignore_rules_nested_negated_anchored_and_git_folder(tmp_path: Path) -> None:
    tree(
        tmp_path,
        {
            ".gitignore": "*.log\nbuild/\n/secret.txt\n",
            "a.py": "",
            "x.log": "",
            "build/out.bin": "",
            "secret.txt": "",
            "sub/secret.txt": "",  # /secret.txt is anchored at the top
            "sub/.gitignore": "*.tmp\n!keep.log\n",
            "sub/y.tmp": "",
            "sub/keep.log": "",  # re-included by the deeper file
            "sub/deeper/z.tmp": "",
            "sub/deeper/w.py": "",
            "other/y.tmp": "",  # sub/.gitignore does not reach here
            ".git/config": "",
            ".git/objects/ab": "",
            ".rayignore": "*.ckpt\n",
            "model.ckpt": "",
        },
    )
    assert set(kept_files(tmp_path).files) == {
        "a.py",
        "sub/secret.txt",
        "sub/keep.log",
        "sub/deeper/w.py",
        "other/y.tmp",
    }


def test_gitignore_of_the_enclosing_repository_applies_to_a_subfolder(tmp_path: Path) -> None:
    tree(tmp_path, {".git/HEAD": "", ".gitignore": "runs/\n", "exp/runs/r.txt": "", "exp/a": ""})
    assert set(kept_files(tmp_path / "exp").files) == {"a"}


def test_exclude_patterns_and_a_malformed_one(tmp_path: Path) -> None:
    spec = project(tmp_path)
    tree(tmp_path, {"big/blob.bin": "x", "w.ckpt": "x", "keep/me.txt": "x"})
    plan = plan_for(spec, tmp_path, ["big/", "*.ckpt"])
    assert set(plan.files) == {"code.py", "keep/me.txt", "exp/spec.yaml", "exp/data/train.tsv"}
    with pytest.raises(UserError, match=r"--exclude 'a\\\\': .*expected a .gitignore pattern"):
        plan_for(spec, tmp_path, ["a\\"])


def test_gitignored_data_is_uploaded_anyway_with_a_note(tmp_path: Path) -> None:
    spec = project(tmp_path)
    (tmp_path / ".gitignore").write_text("data/\n")
    plan = plan_for(spec, tmp_path)
    assert "exp/data/train.tsv" in plan.files
    assert plan.notes == [
        "data.train.path: uploading exp/data/train.tsv although .gitignore or --exclude "
        "leaves it out (the job reads it)"
    ]
    # The same for an --exclude that names it.
    (tmp_path / ".gitignore").unlink()
    assert "exp/data/train.tsv" in plan_for(spec, tmp_path, ["*.tsv"]).files


def test_data_outside_the_working_dir_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "d.tsv"
    tree(tmp_path, {"elsewhere/d.tsv": "text\tlabel\na\t1\n"})
    root = tmp_path / "proj"
    spec = project(root, data=str(outside))
    with pytest.raises(UserError) as caught:
        plan_for(spec, root)
    assert caught.value.problems == [
        f"data.train.path: {outside} is outside the working directory {root}; run from a "
        "folder that contains it (or pass --working-dir), or use remote data (hub: or s3://)"
    ]


def test_spec_outside_the_working_dir_is_refused(tmp_path: Path) -> None:
    spec = project(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(UserError, match="the spec is outside the working directory"):
        plan_for(spec, tmp_path / "b")


def test_data_glob_matching_nothing_is_refused(tmp_path: Path) -> None:
    spec = project(tmp_path, data="data/*.csv")
    with pytest.raises(UserError, match=r"data.train.path: '.*data/\*.csv' matches no files"):
        plan_for(spec, tmp_path)


def test_absolute_data_path_is_rewritten_relative_to_the_spec(tmp_path: Path) -> None:
    spec = project(tmp_path, data=str(tmp_path / "exp" / "data" / "*.tsv"))
    plan = plan_for(spec, tmp_path)
    assert plan.overrides == ["data.train.path=data/*.tsv"]
    assert plan.notes == [
        f"data.train.path: {tmp_path}/exp/data/*.tsv is read as data/*.tsv (next to the spec)"
    ]


def test_model_folder_beside_the_spec_travels_as_written(tmp_path: Path) -> None:
    spec = project(tmp_path, model={"name_or_path": "tiny"})
    tree(tmp_path, {"exp/tiny/config.json": "{}", "exp/tiny/w.bin": "x"})
    (tmp_path / ".gitignore").write_text("*.bin\n")
    plan = plan_for(spec, tmp_path)
    assert {"exp/tiny/config.json", "exp/tiny/w.bin"} <= set(plan.files)  # weights forced in
    assert plan.overrides == []


def test_model_folder_named_from_the_current_folder_is_rewritten(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree(tmp_path, {"models/tiny/config.json": "{}"})
    spec = project(tmp_path, model={"name_or_path": "models/tiny"})
    monkeypatch.chdir(tmp_path)  # the job runs in the upload's root, not next to the spec
    plan = plan_for(spec, tmp_path)
    assert plan.overrides == ["model.name_or_path=../models/tiny"]
    assert "models/tiny/config.json" in plan.files


def test_symlinked_folders_are_named_not_followed(tmp_path: Path) -> None:
    spec = project(tmp_path / "proj")
    tree(tmp_path, {"big/blob": "x"})
    (tmp_path / "proj" / "link").symlink_to(tmp_path / "big")
    plan = plan_for(spec, tmp_path / "proj")
    assert not any(name.startswith("link/") for name in plan.files)
    assert "link/: a symlinked folder, not uploaded" in plan.notes


def test_model_folder_outside_the_working_dir_is_refused(tmp_path: Path) -> None:
    tree(tmp_path, {"models/tiny/config.json": "{}"})
    spec = project(tmp_path / "proj", model={"name_or_path": str(tmp_path / "models" / "tiny")})
    with pytest.raises(UserError, match=r"model.name_or_path: .* is outside .* a hub model id"):
        plan_for(spec, tmp_path / "proj")


def test_staged_folder_holds_exactly_the_plan(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    spec = project(root)
    (root / ".gitignore").write_text("*.tsv\n")
    plan = plan_for(spec, root)
    staged = tmp_path / "staged"
    plan.stage(staged)
    found = {p.relative_to(staged).as_posix() for p in staged.rglob("*") if p.is_file()}
    assert found == set(plan.files) == {"code.py", "exp/spec.yaml", "exp/data/train.tsv"}
    assert (staged / "exp/data/train.tsv").read_text() == (root / "exp/data/train.tsv").read_text()


# --------------------------------------------------------------------------- size, storage


def test_over_the_size_cap_names_the_largest_entries(tmp_path: Path) -> None:
    spec = project(tmp_path)
    tree(
        tmp_path, {"weights/a.bin": "x" * 3000, "weights/b.bin": "x" * 2000, "notes.md": "y" * 900}
    )
    plan = plan_for(spec, tmp_path)
    plan.check_size(cap=plan.size + 1)  # just under: fine
    with pytest.raises(UserError) as caught:
        plan.check_size(cap=4096)
    [line] = caught.value.problems
    assert line.startswith(f"--working-dir {tmp_path}: the upload is 0.0 MiB (6 files), over Ray's")
    assert "largest: weights/ 0.0 MiB, notes.md 0.0 MiB, exp/ 0.0 MiB, code.py 0.0 MiB" in line
    assert "--exclude PATTERN" in line and "remote storage (hub: or s3://)" in line
    assert [name for name, _ in plan.largest(2)] == ["weights/", "notes.md"]


def test_ray_upload_cap_is_the_dashboard_request_limit() -> None:
    from ray._private.ray_constants import DASHBOARD_CLIENT_MAX_SIZE

    from raytune_ft.submit.upload import ray_upload_cap

    assert ray_upload_cap() == DASHBOARD_CLIENT_MAX_SIZE == 100 << 20


@pytest.mark.parametrize("path", ["runs", "./runs", "~/runs"])
def test_relative_storage_is_refused(tmp_path: Path, path: str) -> None:
    spec = load_spec(project(tmp_path, storage={"path": path}))
    with pytest.raises(UserError) as caught:
        check_storage(spec)
    [line] = caught.value.problems
    assert line.startswith(f"storage.path: {path!r} is relative: on the cluster it would be")
    assert "s3://BUCKET/PREFIX, gs://BUCKET/PREFIX or an absolute path mounted" in line


@pytest.mark.parametrize("path", ["/mnt/shared/runs", "file:///mnt/runs", "s3://b/p", "gs://b/p"])
def test_absolute_or_remote_storage_is_accepted(tmp_path: Path, path: str) -> None:
    check_storage(load_spec(project(tmp_path, storage={"path": path})))


def test_cli_refuses_bad_spec_and_relative_storage_before_any_upload(tmp_path: Path) -> None:
    spec = project(tmp_path, storage={"path": "runs"})
    args = ["submit", str(spec), "--address", "http://127.0.0.1:9"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.output.startswith("error: storage.path: 'runs' is relative")
    result = runner.invoke(app, [*args, "--set", "train.epochs=zero"])
    assert result.exit_code == 2
    assert "train.epochs: Input should be a valid integer" in result.output
    result = runner.invoke(app, [*args, "--follow", "--no-wait"])
    assert result.output == "error: --follow and --no-wait: expected one of them, not both\n"


# --------------------------------------------------------------------------- the job itself


def test_submission_id_is_readable_and_unique() -> None:
    now = datetime(2026, 11, 27, 15, 30, 12)
    ids = {submission_id("quickstart", "tune", now) for _ in range(50)}
    assert all(re.fullmatch(r"quickstart-tune-20261127-153012-[0-9a-f]{4}", i) for i in ids)
    assert len(ids) > 40  # 4 random hex digits: collisions within one second are rare


def test_entrypoint_quotes_overrides() -> None:
    sets = ["storage.path=/mnt/my runs", "sweep.space.peft.r={choice: [4, 8]}"]
    line = entrypoint("tune", "exp/spec.yaml", sets)
    assert shlex.split(line) == [
        "python",
        "-m",
        "raytune_ft",
        "tune",
        "exp/spec.yaml",
        "--set",
        sets[0],
        "--set",
        sets[1],
    ]


def test_runtime_env_merges_env_vars_spec_wins_and_pip_only_when_given(tmp_path: Path) -> None:
    from raytune_ft.launch.local_ray import RUNTIME_ENV_VARS

    cluster = {"runtime_env": {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1", "X": "1"}}}
    spec = load_spec(project(tmp_path, cluster=cluster))
    env = runtime_env(spec, tmp_path)
    assert env["working_dir"] == str(tmp_path)
    assert env["env_vars"] == {
        **RUNTIME_ENV_VARS,
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "1",
        "X": "1",
    }
    assert "pip" not in env
    spec = load_spec(project(tmp_path, cluster={"runtime_env": {"pip": ["peft==0.21.2"]}}))
    assert runtime_env(spec, tmp_path)["pip"] == ["peft==0.21.2"]


# --------------------------------------------------------------------------- address, token


def test_address_option_wins_over_the_environment() -> None:
    env = {"RAY_API_SERVER_ADDRESS": "http://a:1", "RAY_ADDRESS": "http://b:2"}
    assert resolve_address("http://c:8265/", env) == Address("http://c:8265", "--address")
    assert resolve_address(None, env) == Address("http://a:1", "RAY_API_SERVER_ADDRESS")
    assert resolve_address(None, {"RAY_ADDRESS": "https://b:2"}).url == "https://b:2"


def test_a_gcs_ray_address_is_not_a_dashboard() -> None:
    with pytest.raises(UserError) as caught:
        resolve_address(None, {"RAY_ADDRESS": "127.0.0.1:6379"})
    assert caught.value.problems == [
        "--address: no address given; expected a Ray dashboard, e.g. http://HEAD:8265 "
        "(or $RAY_API_SERVER_ADDRESS set to one)"
    ]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("head:8265", "not an http:// or https:// URL"),
        ("ftp://head:8265", "not an http:// or https:// URL"),
        ("http://", "no host, or a bad port"),
        ("http://head:99999", "no host, or a bad port"),
        ("http://head:8265/api/jobs", "a URL with a path; expected only scheme, host and port"),
    ],
)
def test_bad_addresses_are_named(value: str, why: str) -> None:
    with pytest.raises(UserError) as caught:
        resolve_address(value, {})
    assert caught.value.problems == [
        f"--address: {value!r} is {why}; expected a Ray dashboard, e.g. http://HEAD:8265"
    ]


def test_token_sources_in_rays_order_and_never_shown(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    secret = "s3cr3t-token-value"
    (tmp_path / "file").write_text(f"  {secret}\n")
    assert resolve_token(None, {}) is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("from-home")
    assert resolve_token(None, {}).source == "~/.ray/auth_token"
    path_env = {"RAY_AUTH_TOKEN_PATH": str(tmp_path / "file")}
    assert resolve_token(None, path_env).value == secret
    both = {"RAY_AUTH_TOKEN": "from-env", **path_env}
    assert resolve_token(None, both).source == "$RAY_AUTH_TOKEN"
    token = resolve_token(tmp_path / "file", both)
    assert (token.value, token.source) == (secret, f"--token-file {tmp_path / 'file'}")
    message = str(auth_failed(Address(DASHBOARD, "--address"), token, 403))
    assert secret not in repr(token) + str(token) + message
    assert message == (
        f"authentication failed: the Ray head at {DASHBOARD} refused the token from "
        f"--token-file {tmp_path / 'file'} (HTTP 403); the token is read from --token-file, "
        "else $RAY_AUTH_TOKEN, else the file $RAY_AUTH_TOKEN_PATH names, else ~/.ray/auth_token"
    )


def test_unreadable_or_empty_token_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"RAY_AUTH_TOKEN_PATH \(/nope\): cannot read it: No such"):
        resolve_token(None, {"RAY_AUTH_TOKEN_PATH": "/nope"})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UserError, match="the file is empty"):
        resolve_token(tmp_path / "empty", {})
