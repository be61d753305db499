from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from raytune_ft.launch.local_ray import ray_session
from raytune_ft.spec.sections import ClusterSpec

POSITIVE = ["excellent", "wonderful", "great", "superb", "lovely"]
NEGATIVE = ["terrible", "awful", "horrible", "dreadful", "poor"]
FILLER = [
    "the",
    "a",
    "movie",
    "phone",
    "food",
    "service",
    "plot",
    "story",
    "was",
    "is",
    "and",
    "really",
    "very",
    "quite",
    "it",
    "this",
]


@pytest.fixture(scope="session")
def ray_local() -> Iterator[None]:
    """One local Ray on 127.0.0.1 for every integration test (ray.init costs ~8 s)."""
    with ray_session(ClusterSpec(address="local"), cpus_per_trial=2):
        yield


@pytest.fixture(scope="session")
def keyword_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An easy sentiment task (one telling word among filler) that a tiny model learns fast."""
    rng = random.Random(0)
    folder = tmp_path_factory.mktemp("keyword-data")
    lines = ["text\tlabel"]
    for i in range(800):
        label = i % 2
        words = [*rng.sample(FILLER, 6), rng.choice(POSITIVE if label else NEGATIVE)]
        rng.shuffle(words)
        lines.append(f"{' '.join(words)} {i}\t{label}")
    path = folder / "keyword.tsv"
    path.write_text("\n".join(lines) + "\n")
    return path
