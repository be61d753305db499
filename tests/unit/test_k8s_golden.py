"""The manifests committed in k8s/ are what `raytune-ft k8s render` writes today.

Each case is re-rendered through the real CLI into a temporary folder and compared with the
committed folder as parsed YAML (key order and comments aside). After an intended change:

    RAYTUNE_FT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_k8s_golden.py

rewrites the committed folders (review the diff before committing). k8s/README.md must show the
exact command of every case, and every case folder must pass `raytune-ft k8s validate`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.k8s.validate import validate_paths

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
UPDATE = os.environ.get("RAYTUNE_FT_UPDATE_GOLDEN") == "1"
REGENERATE = "RAYTUNE_FT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_k8s_golden.py"

# case folder -> the render arguments (paths relative to the repository root), as in the README.
CASES: dict[str, list[str]] = {
    "quickstart-cpu": [
        "experiments/quickstart.yaml",
        "--cluster",
        "k8s/clusters/cpu-dev.yaml",
        "--set",
        "storage.path=/mnt/raytune-ft",
    ],
    "sft-gpu": [
        "experiments/sft.yaml",
        "--cluster",
        "k8s/clusters/gpu-a10.yaml",
        "--set",
        "storage.path=s3://YOUR-BUCKET/raytune-ft",
    ],
    "sweep-multinode": [
        "experiments/quickstart.yaml",
        "--cluster",
        "k8s/clusters/gpu-multinode.yaml",
        "--set",
        "storage.path=/mnt/raytune-ft",
        "--set",
        "scaling.use_gpu=true",
        "--set",
        "scaling.num_workers=16",
        "--set",
        "sweep.max_concurrent_trials=2",
        "--set",
        "name=quickstart-multinode",  # not the quickstart-cpu case's names: both can coexist
    ],
}

runner = CliRunner()


def command(case: str) -> list[str]:
    return ["k8s", "render", *CASES[case], "-o", f"k8s/{case}"]


def render(case: str, out: Path, force: bool = False) -> None:
    args = command(case)[:-1] + [str(out)] + (["--force"] if force else [])
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output


def documents(folder: Path) -> dict[str, list[Any]]:
    return {
        path.name: list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        for path in sorted(folder.glob("*.yaml"))
    }


def _lines(docs: list[Any]) -> list[str]:
    return json.dumps(docs, indent=1, sort_keys=True).splitlines(keepends=True)


def differences(committed: dict[str, list[Any]], fresh: dict[str, list[Any]]) -> str:
    out = []
    for name in sorted(set(committed) | set(fresh)):
        old, new = committed.get(name, []), fresh.get(name, [])
        if old != new:
            diff = difflib.unified_diff(
                _lines(old), _lines(new), f"committed/{name}", f"rendered/{name}", n=2
            )
            out.append("".join(list(diff)[:80]))
    return "\n".join(out)


@pytest.mark.parametrize("case", sorted(CASES))
def test_committed_manifests_match_a_fresh_render(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the README's commands run from the repository root
    committed_dir = K8S / case
    if UPDATE:
        for stale in committed_dir.glob("*.yaml"):
            stale.unlink()
        render(case, committed_dir, force=True)
    render(case, tmp_path / case)
    fresh, committed = documents(tmp_path / case), documents(committed_dir)
    if fresh != committed:
        pytest.fail(
            f"k8s/{case} differs from a fresh render:\n{differences(committed, fresh)}\n"
            f"If the change is intended, regenerate with:\n  {REGENERATE}",
            pytrace=False,
        )


def test_every_case_folder_validates() -> None:
    assert validate_paths([K8S / case for case in sorted(CASES)]) == []


def test_k8s_holds_only_the_cases_and_the_cluster_files() -> None:
    folders = {p.name for p in K8S.iterdir() if p.is_dir()}
    assert folders == {*CASES, "clusters"}, "a folder in k8s/ that no test renders"
    assert {p.name for p in (K8S / "clusters").iterdir()} == {
        "cpu-dev.yaml",
        "gpu-a10.yaml",
        "gpu-multinode.yaml",
    }


def test_the_readme_shows_the_command_of_every_case() -> None:
    text = (K8S / "README.md").read_text(encoding="utf-8")
    flat = re.sub(r"\s+", " ", text.replace("\\\n", " "))
    for case in CASES:
        line = "raytune-ft " + shlex.join(command(case))
        assert line in flat, f"k8s/README.md lacks the command of {case}: {line}"
