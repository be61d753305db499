"""Shared test constants and builders (imported by tests; conftest.py holds only fixtures)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENTIMENT = ROOT / "experiments" / "data" / "sentiment"


def minimal_spec(**sections: object) -> dict:
    """The smallest valid spec mapping, with sections replaced or added."""
    spec: dict = {
        "name": "t",
        "model": {"name_or_path": "all-MiniLM-L6-v2"},
        "data": {
            "train": {"path": str(SENTIMENT / "*_labelled.txt"), "columns": ["text", "label"]}
        },
    }
    spec.update(sections)
    return spec
