"""Ray Train + DeepSpeed on a real local Ray (127.0.0.1), CPU accelerator, gloo."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from helpers import keyword_spec

from raytune_ft.evaluation.evaluate import evaluate_model_dir
from raytune_ft.spec import load_spec, validate_spec
from raytune_ft.spec.sections import StorageSpec
from raytune_ft.storage import storage_root
from raytune_ft.train.runner import build_trainer, preflight, run_training

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def read_steps(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]


def listening_sockets() -> set[tuple[str, int, str]]:
    """(address, port, process name) of every listening socket of this process's tree."""
    me = psutil.Process()
    names = {}
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            names[process.pid] = process.name()
    return {
        (c.laddr.ip, c.laddr.port, names[c.pid])
        for c in psutil.net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN and c.pid in names
    }


def process_titles() -> set[str]:
    """The first word of the command line of every process of this process's tree (Ray
    retitles an actor's process `ray::CLASS`)."""
    me = psutil.Process()
    titles = set()
    for process in [me, *me.children(recursive=True)]:
        with contextlib.suppress(psutil.Error, IndexError):
            titles.add(process.cmdline()[0])
    return titles


def is_loopback(host: str) -> bool:
    address = ipaddress.ip_address(host.split("%")[0])
    return (getattr(address, "ipv4_mapped", None) or address).is_loopback


def test_two_worker_zero2_training_lowers_loss_and_checkpoints(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = validate_spec(keyword_spec(tiny_bert, keyword_data, tmp_path))
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_training(spec)))
    thread.start()
    # While it trains: every socket of every process of the run (Ray's servers and agents,
    # the train controller, both workers with torch's store and gloo) listens on loopback.
    seen: set[tuple[str, int, str]] = set()
    titles: set[str] = set()
    while thread.is_alive():
        logs = list(tmp_path.glob("kw-train-*/steps.jsonl"))
        if logs and '"event": "checkpoint"' in logs[0].read_text():
            seen |= listening_sockets()
            titles |= process_titles()
        time.sleep(0.5)
    thread.join()
    assert any("RayTrainWorker" in name for _, _, name in seen), seen  # not vacuous
    assert [s for s in seen if not is_loopback(s[0])] == []
    # Nothing drains the one node of a local Ray: no preemption watcher process per run.
    assert any(t.startswith("ray::TrainController") for t in titles), titles
    assert not [t for t in titles if "PreemptionWatcher" in t], titles
    run_dir, summary = outcome["result"].run_dir.local_path, outcome["result"].summary

    losses = [s["loss"] for s in read_steps(run_dir) if "loss" in s]
    assert len(losses) == spec.schedule(640).total_steps == 80  # 640 rows / (2 x 16) x 4 epochs
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses

    assert (
        summary["best_validation"] > 0.9 > summary["validation_metrics"]["eval_majority_accuracy"]
    )
    assert summary["test_metrics"]["test_accuracy"] > 0.9
    # The test split was scored by the worker group itself, with the best weights.
    assert json.loads((run_dir / "test_metrics.json").read_text())["step"] == summary["best_step"]
    # A resume checkpoint at each evaluation but the last (train.checkpoint.at_end is off);
    # retention (keep: 1) deletes older ones whole, optimizer shards included; Ray may still
    # hold one more that was uploading when the next arrived.
    checkpoints = summary["checkpoints"]
    assert checkpoints["count"] == spec.schedule(640).num_evaluations - 1 == 7
    assert all(b > 0 for b in checkpoints["bytes"]) and len(checkpoints["seconds"]) == 7
    folders = sorted(f for f in (run_dir / "ray-train").glob("checkpoint_*") if f.is_dir())
    assert 1 <= len(folders) <= 2, folders
    kept = folders[-1]
    shards = sorted(p.name for p in (kept / "deepspeed" / "state").glob("*optim_states.pt"))
    assert len(shards) == 2, sorted(str(f.relative_to(kept)) for f in kept.rglob("*"))
    assert not (kept / "model").exists()
    # best-model/ is an export (weights and tokenizer, no optimizer state), written only when
    # the metric improved.
    assert summary["exports"]["count"] <= spec.schedule(640).num_evaluations
    assert (run_dir / "best-model" / "config.json").exists()
    assert not list((run_dir / "best-model").rglob("*optim*"))
    assert summary["timings"]["tokens_per_s"] > 0 and summary["timings"]["time_train_s"] > 0
    # The copied best model evaluates to the same test accuracy on its own, without Ray.
    again = evaluate_model_dir(spec, run_dir / "best-model", "test", summary["prepared_data"])
    assert again["test_accuracy"] == pytest.approx(summary["test_metrics"]["test_accuracy"])
    for name in ("spec.yaml", "data_report.json", "summary.json"):
        assert (run_dir / name).exists()


def test_killed_worker_resumes_from_last_checkpoint(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    spec = validate_spec(
        keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=3, micro_batch_size=8)
        | {"deepspeed": {"zero_stage": 1}}
    )

    def train_worker_pids() -> set[int]:
        return {
            p.pid
            for p in psutil.process_iter(["cmdline"])
            if any("RayTrainWorker" in part for part in (p.info["cmdline"] or []))
        }

    before = train_worker_pids()  # workers of earlier runs may still be exiting
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_training(spec)))
    thread.start()

    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and thread.is_alive():
        logs = list(tmp_path.glob("kw-train-*/steps.jsonl"))
        reported = logs and logs[0].read_text().count('"event": "checkpoint"')
        # Two reported checkpoints: the first one is registered with Ray Train for sure.
        workers = sorted(train_worker_pids() - before)
        if reported and reported >= 2 and workers:
            killed = workers[-1]
            os.kill(killed, signal.SIGKILL)
            break
        time.sleep(0.1)
    thread.join(timeout=300)
    assert killed is not None, "no worker to kill before training ended"
    assert "result" in outcome, "training did not finish after the worker was killed"

    run_dir = outcome["result"].run_dir
    steps = read_steps(run_dir)
    resumed = [s for s in steps if s.get("event") == "resumed"]
    assert resumed and resumed[0]["step"] > 0, steps[:5]  # restored, not restarted from 0
    assert resumed[0]["step"] >= min(s["step"] for s in steps if s.get("event") == "checkpoint")
    last_step = max(s["step"] for s in steps if "loss" in s)
    assert last_step == spec.schedule(640).total_steps
    assert outcome["result"].summary["best_validation"] > 0.9


def test_minilm_on_real_reviews_beats_majority_class(ray_local: None, tmp_path: Path) -> None:
    """The quickstart's spec (real MiniLM, LoRA, the review files with their site column), one
    training run of it on 640 rows: this is also that example's run test."""
    spec = load_spec(
        ROOT / "experiments" / "quickstart.yaml",
        [
            f"storage.path={tmp_path}",
            "data.max_length=48",
            "data.max_train_samples=640",
            "train.micro_batch_size=16",
            "train.eval_every=epoch",
            "train.checkpoint.at_end=true",
            "scaling.cpus_per_worker=2",
        ],
    )
    summary = run_training(spec).summary
    majority = summary["validation_metrics"]["eval_majority_accuracy"]
    assert summary["best_validation"] >= majority + 0.2, summary
    # LoRA: the frozen base (22.7M parameters, 87 MiB in fp32) is in neither the resume
    # checkpoint (adapters, head and their optimizer state) nor the export (adapters, head).
    [checkpoint_bytes] = summary["checkpoints"]["bytes"]
    [export_bytes] = summary["exports"]["bytes"]
    assert checkpoint_bytes < 16 * 2**20 and export_bytes < 4 * 2**20, summary
    assert Path(summary["best_model"], "adapter_config.json").exists()
    # The spec's group column: test metrics for each review site.
    assert set(summary["test_metrics"]["slices"]) == {"amazon", "imdb", "yelp"}, summary


def test_rerun_after_the_last_step_reports_a_final_result(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    """A trainer restarted on a finished run (a sweep resumed after a driver crash) must still
    report, or Tune keeps whatever stale result it last saved for that trial."""
    spec = keyword_spec(tiny_bert, keyword_data, tmp_path, epochs=1, checkpoint={"at_end": True})
    # One worker: the restart is the trainer's, whatever its worker group's size.
    spec = validate_spec(spec | {"scaling": {"num_workers": 1, "max_failures": 1}})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    prepared = preflight(spec).path
    where = storage_root(StorageSpec(path=str(run_dir)))
    first = build_trainer(spec, False, where, "ray-train", prepared).fit()
    again = build_trainer(spec, False, where, "ray-train", prepared).fit()
    total = spec.schedule(640).total_steps
    assert first.metrics["step"] == again.metrics["step"] == total
    # Ray Train restores Result.metrics from its snapshot either way; what a Tune trial sees is
    # only what is reported after the restart, so there must be a report after "resumed".
    events = [s for s in read_steps(run_dir) if "event" in s]
    resumed_at = [i for i, e in enumerate(events) if e["event"] == "resumed"]
    assert [events[i]["step"] for i in resumed_at] == [total]
    after = events[resumed_at[0] + 1 :]
    assert [(e["event"], e["step"]) for e in after if e["event"] != "export"] == [
        ("checkpoint", total),
        ("eval", total),
    ]
    assert after[-1]["eval_accuracy"] == pytest.approx(first.metrics["eval_accuracy"])


@pytest.mark.parametrize(
    ("zero_stage", "accumulation", "precision", "init"),
    [(0, 2, "fp32", "random"), (3, 1, "bf16", "pretrained")],
    ids=["zero0-accumulate2-fp32-random-init", "zero3-bf16"],
)
def test_other_zero_stages_accumulation_and_bf16_train(
    ray_local: None,
    tiny_bert: Path,
    keyword_data: Path,
    tmp_path: Path,
    zero_stage: int,
    accumulation: int,
    precision: str,
    init: str,
) -> None:
    spec_dict = keyword_spec(
        tiny_bert,
        keyword_data,
        tmp_path,
        micro_batch_size=16 // accumulation,
        gradient_accumulation_steps=accumulation,
        precision=precision,
    ) | {"deepspeed": {"zero_stage": zero_stage}}
    if init == "random":  # a fresh model of the config's shape, one layer instead of two
        spec_dict["model"] |= {"init": "random", "config_overrides": {"num_hidden_layers": 1}}
        # GPU features that also run on CPU, asked for explicitly (auto leaves them off here).
        spec_dict["performance"] = {
            "gradient_checkpointing": True,
            "fused_optimizer": True,
            "attention": "eager",
            "dataloader_workers": 1,
        }
    spec = validate_spec(spec_dict)
    outcome = run_training(spec)
    best = json.loads((outcome.run_dir.local_path / "best-model" / "config.json").read_text())
    assert best["num_hidden_layers"] == (1 if init == "random" else 2)
    losses = [s["loss"] for s in read_steps(outcome.run_dir) if "loss" in s]
    assert len(losses) == spec.schedule(640).total_steps == 80  # same global batch of 32
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5, losses
    assert outcome.summary["test_metrics"]["test_accuracy"] > 0.9
    runtime = outcome.summary["runtime"]  # what the engine ran with, not what was asked
    assert (runtime["zero_stage"], runtime["precision"]) == (zero_stage, precision)
    assert runtime["bf16_enabled"] is (precision == "bf16")
    assert runtime["param_dtype"] == ("bfloat16" if precision == "bf16" else "float32")
    performance = runtime["performance"]
    explicit = init == "random"
    assert performance["fused_optimizer"] is explicit
    assert performance["gradient_checkpointing"] == int(explicit)  # a layer stride; 1: every one
    assert performance["attention"] == ("eager" if explicit else None)
    assert performance["dataloader_workers"] == int(explicit) and not performance["liger"]
    # Under ZeRO-3 rank 0 gathers the partitioned weights into a whole HF model.
    again = evaluate_model_dir(
        spec, outcome.run_dir.local_path / "best-model", "test", outcome.summary["prepared_data"]
    )
    assert again["test_accuracy"] == pytest.approx(outcome.summary["test_metrics"]["test_accuracy"])


def test_deepspeeds_cpu_adam_steps_as_torchs_adamw() -> None:
    """The offloaded optimizer's math: decoupled weight decay per group, the same defaults."""
    import torch

    from raytune_ft.train.optimizer import build_optimizer

    torch.manual_seed(0)
    start = [torch.randn(8, 4), torch.randn(4)]
    grads = [[torch.randn_like(t) for t in start] for _ in range(3)]
    params = {}
    for offload in (False, True):
        weights = [t.clone().requires_grad_() for t in start]
        groups = [
            {"params": [weights[0]], "weight_decay": 0.1, "decayed": True},
            {"params": [weights[1]], "weight_decay": 0.0, "decayed": False},
        ]
        chosen = build_optimizer(groups, 1e-2, offload=offload, fused=False)
        for step in grads:
            for weight, grad in zip(weights, step, strict=True):
                weight.grad = grad.clone()
            chosen.optimizer.step()
        params[chosen.name] = [w.detach() for w in weights]
    assert set(params) == {"torch_adamw", "deepspeed_cpu_adam"}
    for ours, theirs in zip(params["deepspeed_cpu_adam"], params["torch_adamw"], strict=True):
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(params["torch_adamw"][0], start[0])  # it stepped


def test_a_checkpoint_of_either_adamw_resumes_with_the_other() -> None:
    """An offloaded run may resume where the other AdamW is chosen (its CPU Adam build newly
    fails or newly works): the state loads, the groups get the keys the new one reads, and
    it steps (CPU Adam crashed on torch's groups with KeyError: 'bias_correction')."""
    import torch

    from raytune_ft.train.optimizer import build_optimizer, complete_groups

    for saved_offload in (False, True):
        weight = torch.randn(8, 4, requires_grad=True)
        first = build_optimizer(
            [{"params": [weight], "weight_decay": 0.1}], 1e-2, offload=saved_offload, fused=False
        ).optimizer
        weight.grad = torch.randn(8, 4)
        first.step()
        second = build_optimizer(
            [{"params": [weight], "weight_decay": 0.1}],
            1e-2,
            offload=not saved_offload,
            fused=False,
        ).optimizer
        second.load_state_dict(first.state_dict())
        complete_groups(second)
        before = weight.detach().clone()
        weight.grad = torch.randn(8, 4)
        second.step()
        assert not torch.equal(weight.detach(), before)
        assert torch.isfinite(weight).all()


def test_optimizer_offload_trains_as_on_the_device_with_deepspeeds_cpu_adam(
    ray_local: None, tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    """ZeRO-2 with the optimizer on the host, two workers: DeepSpeed refuses torch's AdamW
    there unless told, so the step is its CPU Adam (JIT-built on first use, then cached), and
    the same seed gives the same losses as the optimizer on the device."""
    losses, runtimes = {}, {}
    for offload in ("none", "cpu"):
        spec = validate_spec(
            keyword_spec(tiny_bert, keyword_data, tmp_path / offload, epochs=2)
            | {"deepspeed": {"zero_stage": 2, "offload_optimizer": offload}}
        )
        outcome = run_training(spec)
        losses[offload] = [s["loss"] for s in read_steps(outcome.run_dir) if "loss" in s]
        runtimes[offload] = outcome.summary["runtime"]
        assert outcome.summary["test_metrics"]["test_accuracy"] > 0.9
    assert (runtimes["cpu"]["optimizer"], runtimes["cpu"]["optimizer_on_host"]) == (
        "deepspeed_cpu_adam",
        True,
    )
    assert (runtimes["none"]["optimizer"], runtimes["none"]["optimizer_on_host"]) == (
        "torch_adamw",
        False,
    )
    assert len(losses["cpu"]) == len(losses["none"]) == 40
    assert losses["cpu"] == pytest.approx(losses["none"], rel=1e-3, abs=1e-4)


def test_optimizer_offload_falls_back_to_torch_adamw_when_cpu_adam_cannot_build(
    tiny_bert: Path, keyword_data: Path, tmp_path: Path
) -> None:
    """A machine with no working C++ compiler (CXX that fails, an empty extension cache, so
    the build is really tried): the run says why in one line and trains with torch's AdamW."""
    import yaml

    spec = keyword_spec(tiny_bert, keyword_data, tmp_path / "runs", epochs=2) | {
        "deepspeed": {"zero_stage": 2, "offload_optimizer": "cpu"},
        "scaling": {"num_workers": 1},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    env = os.environ | {
        "CXX": "/bin/false",
        "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions"),
    }  # the CLI's own local Ray hands this environment to its worker
    done = subprocess.run(
        [sys.executable, "-m", "raytune_ft", "train", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if "deepspeed.offload_optimizer:" in line]
    assert len(lines) == 1, done.stderr[-3000:]
    assert "CPU Adam could not be built" in lines[0] and "torch's AdamW" in lines[0]
    (run_dir,) = (tmp_path / "runs").glob("kw-train-*")
    runtime = json.loads((run_dir / "runtime.json").read_text())
    assert (runtime["optimizer"], runtime["optimizer_on_host"]) == ("torch_adamw", True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_metrics"]["test_accuracy"] > 0.9
