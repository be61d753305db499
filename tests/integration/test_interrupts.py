"""Real signals to a real `raytune-ft` process: clean stops, resume, orphans, no retries in vain.

Each CLI run here starts its own local Ray while this test session's Ray (the `ray_local`
fixture) is running too: the two must never see each other.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml
from helpers import keyword_spec

from raytune_ft.launch.sessions import _marked_processes, sessions_root

pytestmark = pytest.mark.integration


def cli_spec(tiny_bert: Path, data: Path, storage: Path, **extra: object) -> Path:
    """The keyword run as a spec file, at micro-batch 8 (160 steps), sections replaced."""
    spec = keyword_spec(tiny_bert, data, storage, micro_batch_size=8) | {"name": "sig", **extra}
    path = storage / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def sweep_cli_spec(tiny_bert: Path, data: Path, storage: Path, epochs: int) -> Path:
    """Two one-worker trials of the keyword run, one at a time, a checkpoint per evaluation."""
    return cli_spec(
        tiny_bert,
        data,
        storage,
        train={
            "epochs": epochs,
            "micro_batch_size": 16,
            "learning_rate": 3e-3,
            "eval_every": 10,
            "checkpoint": {"every_evals": 1},
        },
        scaling={"num_workers": 1},
        sweep={
            "num_samples": 2,
            "max_concurrent_trials": 1,
            "search": {"algorithm": "random", "seed": 0},
            "scheduler": {"name": "fifo"},
            "space": {"train.learning_rate": {"loguniform": [1e-3, 5e-3]}},
        },
    )


def start_cli(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    """Start `raytune-ft ARGS` in the background, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "raytune_ft", *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sessions_of_others() -> set[str]:
    """Local Ray sessions on this machine other than this test process's own."""
    ours = os.environ.get("RAYTUNE_FT_SESSION")
    folders = {str(f) for f in sessions_root().glob("rtft-*")} | set(_marked_processes())
    return folders - {ours}


def stop_and_check(
    proc: subprocess.Popen[str], signum: int, command: str, spec: Path, before: set[str]
) -> Path:
    """Send the signal; check the exit code, the one closing line, and that nothing is left."""
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, stderr[-3000:]
    [run_dir] = spec.parent.glob(f"sig-{command}-*")
    last = [line for line in stderr.splitlines() if line.strip()][-1]
    assert last == (
        f"interrupted ({signal.Signals(signum).name}); Ray stopped; run folder: {run_dir}; "
        f"resume with: raytune-ft {command} {spec} --resume"
    )
    for symptom in ("Traceback", "Fatal Python error", "Found multiple active Ray", "failed:"):
        assert symptom not in stderr, stderr[-3000:]
    assert sessions_of_others() == before  # its Ray processes and temp folder are gone
    return run_dir


def resume(command: str, spec: Path) -> str:
    """Run the command the closing line names; return its stdout."""
    done = subprocess.run(
        [sys.executable, "-m", "raytune_ft", command, str(spec), "--resume"],
        cwd=spec.parent,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_a_deterministic_worker_error_fails_once_with_its_cause(
    ray_local: None, tmp_path: Path
) -> None:
    """Ray Train retries any worker error; ours stop it for errors a retry cannot fix."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from raytune_ft.errors import RunFailed
    from raytune_ft.train.failures import FailFastOnDeterministicErrors

    def run(kind: str) -> tuple[int, str]:
        attempts = tmp_path / f"{kind}.attempts"

        def worker(config: dict) -> None:
            with open(config["attempts"], "a") as handle:
                handle.write("x")
            if config["kind"] == "value":
                raise ValueError("Target modules {'nope'} not found in the base model")
            raise RuntimeError("a transient failure")

        trainer = TorchTrainer(
            worker,
            train_loop_config={"attempts": str(attempts), "kind": kind},
            scaling_config=ray.train.ScalingConfig(num_workers=1),
            run_config=ray.train.RunConfig(
                name=kind,
                storage_path=str(tmp_path),
                failure_config=ray.train.FailureConfig(max_failures=1),
                callbacks=[FailFastOnDeterministicErrors()],
            ),
        )
        with pytest.raises(Exception) as info:
            trainer.fit()
        return len(attempts.read_text()), str(RunFailed.from_exception("run", info.value))

    assert run("value") == (
        1,
        "ValueError: Target modules {'nope'} not found in the base model (run folder: run)",
    )
    assert run("runtime") == (2, "RuntimeError: a transient failure (run folder: run)")


def checkpointed_after(log: Path, event: str, count: int) -> bool:
    """Whether the steps log shows `count` checkpoints after its latest `event`."""
    events = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    marks = [i for i, e in enumerate(events) if e.get("event") == event]
    since = events[marks[-1] + 1 :] if marks else events
    return sum(e.get("event") == "checkpoint" for e in since) >= count


def test_a_sweep_stopped_by_ctrl_c_then_killed_resumes_each_time_without_rerunning_trials(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    """Ctrl-C once ended in `failed: 'eval_accuracy'` and exit 1 with no line. SIGKILL runs
    no handler and saves nothing on the way out. After each, `--resume` goes on from Tune's
    last snapshot: the finished trial is left alone, the other goes on from its checkpoint
    (whichever one the snapshot named: none yet, or one Tune's retention had deleted since),
    and no Ray session of the stopped driver is left (the resume's start stops orphans)."""
    before = sessions_of_others()
    # 4 epochs (the tiny model trains ~30 steps a second here): the resumed trial must still
    # be training a second after its second checkpoint.
    spec = sweep_cli_spec(tiny_bert, keyword_data, tmp_path, epochs=4)
    proc = start_cli(["tune", str(spec)], tmp_path)
    pattern = "sig-tune-*/trials/*/steps.jsonl"
    done_mark = '"event": "eval", "step": 160'  # 640 rows at 16, 4 epochs: the last evaluation
    deadline, finished, other = time.monotonic() + 300, None, None
    while time.monotonic() < deadline and proc.poll() is None:
        logs = {p: p.read_text() for p in tmp_path.glob(pattern)}
        finished = next((p for p, text in logs.items() if done_mark in text), None)
        other = next((p for p in logs if p != finished), None)
        if finished and other and checkpointed_after(other, "resumed", 2):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the second trial never checkpointed twice: {proc.poll()}")
    assert finished is not None and other is not None
    finished_log = finished.read_text()

    # 1. Ctrl-C: a clean stop with one closing line; Tune saved its state.
    sweep_dir = stop_and_check(proc, signal.SIGINT, "tune", spec, before)
    assert (sweep_dir / "ray-tune").is_dir()
    # A spec changed since the sweep started is refused, naming the field and both values:
    # Tune would go on feeding the remaining trials the stored spec.
    override = ["--set", "train.weight_decay=0.2"]
    changed = subprocess.run(
        [sys.executable, "-m", "raytune_ft", "tune", str(spec), "--resume", *override],
        cwd=spec.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert changed.returncode == 2, changed.stderr[-2000:]
    assert changed.stderr.startswith(
        "error: --resume: train.weight_decay: the sweep started with 0.01, the spec now says 0.2;"
    ), changed.stderr

    # 2. Resumed, then SIGKILLed once the trial has checkpointed twice since it went on.
    proc = start_cli(["tune", str(spec), "--resume"], tmp_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        text = other.read_text()
        if '"event": "resumed"' in text and checkpointed_after(other, "resumed", 2):
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"the resumed trial never checkpointed twice: {proc.poll()}")
    time.sleep(1)  # Tune logs the results a moment after each checkpoint
    assert done_mark not in other.read_text()
    proc.kill()
    proc.communicate(timeout=60)
    time.sleep(3)  # let what dies with the driver die
    # SIGKILL runs no handler: the driver's Ray session (its folder, processes Ray started
    # for it that outlive it) is left for the next local session to stop.
    [killed] = sessions_of_others() - before
    left = _marked_processes().get(killed, [])
    assert Path(killed).is_dir() and left, killed

    # 3. Resumed again: it finishes.
    resume("tune", spec)
    summary = json.loads((sweep_dir / "summary.json").read_text())
    assert summary["trials"] == {"finished": 2, "stopped_early": 0, "errored": 0, "total": 2}
    assert summary["best_validation"] > 0.9
    assert finished.read_text() == finished_log  # the finished trial did not run again
    events = [json.loads(line) for line in other.read_text().splitlines()]
    assert done_mark in other.read_text()
    # Each resume went on from a checkpoint written after the previous start.
    resumed = [e["step"] for e in events if e.get("event") == "resumed"]
    assert len(resumed) == 2 and 10 <= resumed[0] < resumed[1], events
    # The resume's start stopped the killed driver's Ray (`clean_orphaned_sessions`).
    assert sessions_of_others() == before
    assert not Path(killed).exists()
    assert not [p for p in left if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
