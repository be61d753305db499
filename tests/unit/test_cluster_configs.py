"""The `ray up` configs in cluster/ and the runtime image's Dockerfile, checked without a cloud.

Each launcher config is validated against the schema of the installed Ray and taken through Ray's
own offline preparation (what `ray up` does before its first cloud call); each GPU node type is
compared with the node group a raytune-ft spec declares for it; the Dockerfile's base image and
pins are compared with pyproject.toml. No Docker engine and no cloud account is needed: what a
real `ray up` or `docker build` would add is left to whoever runs them.
"""

from __future__ import annotations

import copy
import fnmatch
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ROOT
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

CLUSTER = ROOT / "cluster"
CONFIGS = {
    "aws": CLUSTER / "aws-gpu.yaml",
    "gcp": CLUSTER / "gcp-gpu.yaml",
    "local": CLUSTER / "local.yaml",
}
CLOUDS = ("aws", "gcp")  # the providers whose node types the config declares
DOCKERFILE = CLUSTER / "Dockerfile"
# BuildKit reads the ignore file named after the Dockerfile, beside it.
DOCKERIGNORE = CLUSTER / "Dockerfile.dockerignore"


def load(name: str) -> dict[str, Any]:
    return yaml.safe_load(CONFIGS[name].read_text())


@cache
def ray_schema() -> dict[str, Any]:
    # Located, not imported: `import ray` costs seconds, and the schema is a plain file.
    spec = importlib.util.find_spec("ray")
    assert spec is not None and spec.submodule_search_locations, "ray is not installed"
    package = Path(next(iter(spec.submodule_search_locations)))
    return json.loads((package / "autoscaler" / "ray-schema.json").read_text())


def schema_errors(config: dict[str, Any]) -> list[str]:
    from jsonschema import Draft7Validator

    errors = Draft7Validator(ray_schema()).iter_errors(config)
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '<top>'}: {e.message}" for e in errors)


def prepared(config: dict[str, Any]) -> dict[str, Any]:
    """What `ray up` makes of a config before it talks to the provider: defaults merged in,
    node types filled out, then Ray's validation (schema plus its own cross-field checks)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    result = prepare_config(copy.deepcopy(config))
    validate_config(result)
    return result


@cache
def pyproject() -> dict[str, Any]:
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11+")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(name: str) -> str:
    """The exact version pyproject.toml pins a dependency to."""
    for line in pyproject()["project"]["dependencies"]:
        requirement = Requirement(line)
        if requirement.name == name:
            (spec,) = requirement.specifier
            assert spec.operator == "==", f"{line}: expected an exact pin"
            return spec.version
    raise AssertionError(f"pyproject.toml does not depend on {name}")


# --------------------------------------------------------------------------- the launcher configs


def test_the_schema_is_rays_launcher_schema() -> None:
    from jsonschema import Draft7Validator

    schema = ray_schema()
    Draft7Validator.check_schema(schema)
    assert schema["title"] == "Ray AutoScaler"
    assert {"cluster_name", "provider"} <= set(schema["required"])


@pytest.mark.parametrize("name", CONFIGS)
def test_config_matches_rays_schema(name: str) -> None:
    assert schema_errors(load(name)) == []


@pytest.mark.parametrize("name", CLOUDS)
def test_ray_up_prepares_cloud_config_offline(name: str) -> None:
    config = prepared(load(name))
    nodes = config["available_node_types"]
    head = nodes[config["head_node_type"]]
    assert head["resources"] == {"CPU": 0} and head["max_workers"] == 0
    workers = {key: node for key, node in nodes.items() if key != config["head_node_type"]}
    assert workers and all(node["resources"].get("GPU", 0) >= 1 for node in workers.values())
    assert all(node["min_workers"] == 0 for node in workers.values())  # scale from zero
    assert config["max_workers"] == sum(node["max_workers"] for node in workers.values())
    # Ray's provider defaults would pip-install on every node start (an old Google API client
    # on a GCP head); the configs replace those lists, and the merged result shows it.
    for key in ("setup_commands", "head_setup_commands", "worker_setup_commands"):
        assert config[key] == [], key


def test_ray_up_prepares_local_config_offline() -> None:
    config = prepared(load("local"))
    (node_type,) = config["available_node_types"].values()  # the one type Ray makes for on-prem
    assert node_type["max_workers"] == len(config["provider"]["worker_ips"])
    # The local provider passes no resources to `ray start`; the head's flags are what keep
    # training off it.
    head_start = " ".join(config["head_start_ray_commands"])
    assert "--num-cpus=0" in head_start and "--num-gpus=0" in head_start


def renamed(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


# Each breaks a valid config in one way and names what the schema must then say: proof that the
# validation above looks at these parts, not just at the file being YAML.
BREAKAGES = {
    "top-level typo": (
        lambda c: renamed(c, "idle_timeout_minutes", "idle_timout_minutes"),
        "<top>: Additional properties are not allowed ('idle_timout_minutes' was unexpected)",
    ),
    "node type typo": (
        lambda c: renamed(c["available_node_types"]["gpu-a10g"], "min_workers", "min_worker"),
        "available_node_types/gpu-a10g: Additional properties are not allowed "
        "('min_worker' was unexpected)",
    ),
    "docker typo": (
        lambda c: renamed(c["docker"], "image", "imgae"),
        "docker: Additional properties are not allowed ('imgae' was unexpected)",
    ),
    "missing provider": (
        lambda c: c.pop("provider"),
        "<top>: 'provider' is a required property",
    ),
    "fractional GPU": (
        lambda c: c["available_node_types"]["gpu-a10g"]["resources"].update(GPU=0.5),
        "available_node_types/gpu-a10g/resources/GPU: 0.5 is not of type 'integer'",
    ),
}


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_schema_rejects_a_broken_config(breakage: str) -> None:
    break_it, expected = BREAKAGES[breakage]
    config = load("aws")
    break_it(config)
    assert expected in schema_errors(config)


def test_ray_rejects_what_the_schema_cannot_see() -> None:
    config = load("gcp")
    config["head_node_type"] = "gpu-h100"  # no such node type
    with pytest.raises(ValueError, match="`head_node_type` must be one of"):
        prepared(config)
    config = load("gcp")
    config["available_node_types"]["gpu-l4"]["min_workers"] = 7  # more than max_workers: 6
    with pytest.raises(ValueError, match="smaller than the sum of `min_workers`"):
        prepared(config)


# --------------------------------------------------------------------------- node groups


def node_group_mismatches(config: dict[str, Any]) -> list[str]:
    """How the config's metadata.raytune_ft_node_groups (what a spec's cluster.node_groups
    would say) differs from its worker node types (what the autoscaler will start)."""
    from raytune_ft.spec.sections import NodeGroupSpec

    nodes = config["available_node_types"]
    workers = {key for key in nodes if key != config["head_node_type"]}
    groups = [NodeGroupSpec.model_validate(g) for g in config["metadata"]["raytune_ft_node_groups"]]
    problems = [f"{key}: no node group" for key in sorted(workers - {g.name for g in groups})]
    for group in groups:
        if group.name not in workers:
            problems.append(f"{group.name}: no worker node type of that name")
            continue
        node = nodes[group.name]
        resources = dict(node["resources"])
        declared = {
            "cpus": (group.cpus, resources.pop("CPU", 0)),
            "gpus": (group.gpus, resources.pop("GPU", 0)),
            "resources": (group.resources, resources),
            "min_nodes": (group.min_nodes, node.get("min_workers", 0)),
            "max_nodes": (group.max_nodes, node.get("max_workers")),
        }
        problems += [
            f"{group.name}: {field} {in_group!r} in the group, {in_node!r} in the node type"
            for field, (in_group, in_node) in declared.items()
            if in_group != in_node
        ]
    return problems


@pytest.mark.parametrize("name", CLOUDS)
def test_node_groups_match_the_node_types(name: str) -> None:
    assert node_group_mismatches(load(name)) == []


def test_node_group_check_sees_drift() -> None:
    config = load("aws")
    config["available_node_types"]["gpu-a10g"]["resources"]["CPU"] = 4
    config["metadata"]["raytune_ft_node_groups"].pop()  # gpu-a100x8
    assert node_group_mismatches(config) == [
        "gpu-a100x8: no node group",
        "gpu-a10g: cpus 8 in the group, 4 in the node type",
    ]


@pytest.mark.parametrize(("name", "bucket"), [("aws", "s3://b/runs"), ("gcp", "gs://b/runs")])
def test_node_groups_paste_into_a_spec(name: str, bucket: str) -> None:
    from raytune_ft.spec import validate_spec

    experiments = ROOT / "experiments"
    raw = yaml.safe_load((experiments / "quickstart.yaml").read_text())
    groups = load(name)["metadata"]["raytune_ft_node_groups"]
    raw["cluster"] = {"node_groups": groups}
    raw["storage"] = {"path": bucket}
    spec = validate_spec(raw, base_dir=experiments)
    assert [g.name for g in spec.cluster.node_groups] == [g["name"] for g in groups]


def test_local_config_has_no_node_types() -> None:
    # The local provider refuses available_node_types: its nodes are the machines listed, and a
    # spec leaves cluster.node_groups empty for it.
    config = load("local")
    assert "available_node_types" not in config and "metadata" not in config


# --------------------------------------------------------------------------- the image


def test_image_tags_agree_with_the_project_version() -> None:
    from raytune_ft.spec.sections import KubernetesSpec

    version = pyproject()["project"]["version"]
    for name in CONFIGS:
        image = load(name)["docker"]["image"]
        assert image.endswith(f"/raytune-ft:{version}"), f"{name}: {image}"
    assert KubernetesSpec().image == f"raytune-ft:{version}"
    assert labels(DOCKERFILE.read_text())["org.opencontainers.image.version"] == version


def instructions(dockerfile: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined."""
    logical, pending = [], ""
    for line in dockerfile.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):  # Docker drops these even mid-instruction
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in logical:
        instruction, _, args = line.partition(" ")
        result.append((instruction.upper(), " ".join(args.split())))
    return result


def labels(dockerfile: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for instruction, args in instructions(dockerfile):
        if instruction == "LABEL":
            found.update(re.findall(r'([\w.\-]+)="([^"]*)"', args))
    return found


def dockerfile_problems(dockerfile: str) -> list[str]:
    """What keeps the image from matching pyproject.toml or from running as Ray expects."""
    ray, torch = pinned("ray"), pinned("torch")
    steps = instructions(dockerfile)
    problems = []
    bases = [args for instruction, args in steps if instruction == "FROM"]
    base = re.fullmatch(
        r"rayproject/ray:(\d+\.\d+\.\d+)-py3(\d+)-cu(\d+)", bases[-1] if bases else ""
    )
    if base is None:
        problems.append(f"FROM {bases}: expected rayproject/ray:VERSION-py3XX-cuXXX")
    else:
        if base[1] != ray:
            problems.append(f"base image has Ray {base[1]}; pyproject pins ray=={ray}")
        python = f"3.{base[2]}"
        if python not in SpecifierSet(pyproject()["project"]["requires-python"]):
            problems.append(f"base image has Python {python}, outside requires-python")
    runs = " && ".join(args for instruction, args in steps if instruction == "RUN")
    torch_pins = set(re.findall(r"\btorch==(\S+)", runs))
    if torch_pins != {torch}:
        problems.append(f"RUN installs torch {sorted(torch_pins)}; pyproject pins torch=={torch}")
    for check in (f"ray.__version__ == '{ray}'", f"== '{torch}'"):
        if check not in runs:
            problems.append(f"no build-time check {check!r}")
    for install in re.findall(r"pip install [^&]*", runs):
        if "--no-cache-dir" not in install:
            problems.append(f"{install.strip()!r} keeps pip's cache in the image")
    users = [args for instruction, args in steps if instruction == "USER"]
    if not users or users[-1].split(":")[0] in ("root", "0"):
        problems.append(f"USER {users}: the image must end on a non-root user (Ray's is `ray`)")
    if ("WORKDIR", "/home/ray/work") not in steps:
        problems.append("no WORKDIR /home/ray/work")
    return problems


def test_dockerfile_agrees_with_pyproject() -> None:
    assert dockerfile_problems(DOCKERFILE.read_text()) == []


# Each changes the real Dockerfile in one way (given today's pins) and names the problem the
# check must then report: proof that it reads the parts it claims to.
EDITS = {
    "another Ray": (
        lambda text, ray, torch: text.replace(f"rayproject/ray:{ray}-", "rayproject/ray:1.0.0-"),
        "base image has Ray 1.0.0",
    ),
    "an old Python": (
        lambda text, ray, torch: re.sub(r"(rayproject/ray:[\d.]+)-py3\d+", r"\1-py39", text),
        "base image has Python 3.9, outside requires-python",
    ),
    "another torch": (
        lambda text, ray, torch: text.replace(f"torch=={torch}", "torch==1.0.0"),
        "RUN installs torch ['1.0.0']",
    ),
    "root at the end": (lambda text, ray, torch: text + "USER root\n", "non-root user"),
    "pip cache kept": (
        lambda text, ray, torch: text.replace("pip install --no-cache-dir", "pip install"),
        "keeps pip's cache",
    ),
}


@pytest.mark.parametrize("edit", EDITS)
def test_dockerfile_check_sees_a_drift(edit: str) -> None:
    change, expected = EDITS[edit]
    text = DOCKERFILE.read_text()
    changed = change(text, pinned("ray"), pinned("torch"))
    assert changed != text, "the edit no longer applies to the Dockerfile"
    problems = dockerfile_problems(changed)
    assert any(expected in problem for problem in problems), problems


def ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for the build context: the last pattern that matches the path, or one of
    its parent folders, decides; `!` re-includes. (fnmatch's `*` also crosses `/`, which these
    patterns never rely on.)"""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        glob = pattern.removeprefix("!")
        globs = {glob, glob.removeprefix("**/")}  # `**/` also matches no folder at all
        if any(fnmatch.fnmatchcase(prefix, g) for prefix in prefixes for g in globs):
            verdict = not negated
    return verdict


def test_build_context_holds_only_what_the_image_copies() -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    copied = [
        source
        for instruction, args in instructions(DOCKERFILE.read_text())
        if instruction == "COPY"
        for source in [a for a in args.split() if not a.startswith("--")][:-1]
    ]
    assert copied, "the Dockerfile copies nothing from the context"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert not ignored(source, patterns), f"{source} is copied but left out of the context"
    assert not ignored("raytune_ft/spec/sections.py", patterns)
    for path in (
        ".venv/bin/python",
        "runs/quickstart/spec.yaml",
        "experiments/runs/x/checkpoint.pt",
        "experiments/quickstart.yaml",
        "tests/unit/test_cluster_configs.py",
        "raytune_ft/__pycache__/cli.cpython-312.pyc",
        ".git/config",
    ):
        assert ignored(path, patterns), f"{path} would be sent to the builder"
