"""`raytune-ft k8s validate`: real KubeRay v1.7.0 samples pass; one planted mistake, one line.

The samples and CRDs are the copies in shared/kuberay (beside the repository, as CI lays it out);
tests that need them skip when it is absent. The rest use small manifests written here.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.k8s import validate as v

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay"
SAMPLES = SHARED / "samples"
CRDS = SHARED / "crds"
needs_shared = pytest.mark.skipif(
    not (SAMPLES.is_dir() and CRDS.is_dir()), reason="shared/kuberay is not beside the repository"
)
SAMPLE_FILES = sorted(p.name for p in SAMPLES.glob("*.yaml")) if SAMPLES.is_dir() else []
REPO = Path(__file__).resolve().parents[2]

runner = CliRunner()

TINY_CLUSTER = """\
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: tiny
  creationTimestamp: null
  annotations:
    created: 2026-01-31
spec:
  headGroupSpec:
    rayStartParams:
    template:
      spec:
        containers:
        - name: ray-head
          image: rayproject/ray:2.52.0
          resources:
            limits: {cpu: "1", memory: 2Gi}
"""


def sample_docs(name: str) -> list[Any]:
    return [d for d in yaml.safe_load_all((SAMPLES / name).read_text()) if d is not None]


# ---- the real samples --------------------------------------------------------------------


@needs_shared
@pytest.mark.parametrize("name", SAMPLE_FILES)
def test_every_kuberay_sample_passes(name: str) -> None:
    assert v.validate_paths([SAMPLES / name]) == []


@needs_shared
def test_the_samples_folder_passes_as_a_whole() -> None:
    report = v.check_paths([SAMPLES])
    assert report.problems == []
    assert (report.documents, report.files) == (18, 12)


# ---- planted mistakes: one change to a real sample, exactly one problem line ---------------


def _head(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["headGroupSpec"]


def _worker(doc: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return doc["spec"]["workerGroupSpecs"][index]


def _container(group: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][index]


def _rename_key(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


def _set(getter: Callable[[Any], dict[str, Any]], key: str, value: Any) -> Callable[[Any], None]:
    return lambda doc: getter(doc).__setitem__(key, value)


def _duplicate_first_container(doc: dict[str, Any]) -> None:
    containers = _head(doc)["template"]["spec"]["containers"]
    containers.append(copy.deepcopy(containers[0]))


def _duplicate_first_worker_group(doc: dict[str, Any]) -> None:
    doc["spec"]["workerGroupSpecs"].append(copy.deepcopy(_worker(doc)))


def _add_deployment_status(doc: dict[str, Any]) -> None:
    doc["spec"]["deletionStrategy"]["deletionRules"][0]["condition"]["jobDeploymentStatus"] = (
        "Failed"
    )


# (sample, document index (1-based), change, label after "#", field path, expected wording)
PLANTED: list[tuple[str, int, Callable[[Any], None], str, str, str]] = [
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _rename_key(_head(d), "rayStartParams", "rayStartParam"),
        "RayCluster/raycluster-complete",
        "spec.headGroupSpec.rayStartParam",
        'unknown field "rayStartParam"; did you mean "rayStartParams"?',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _container(_worker(d))["resources"]["limits"].__setitem__("cpu", 0.5),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].template.spec.containers[0].resources.limits.cpu",
        'expected an integer or a quantity string such as "500m", got 0.5 (a number)',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _container(_head(d))["resources"]["requests"].__setitem__("memory", "2 GB"),
        "RayCluster/raycluster-complete",
        "spec.headGroupSpec.template.spec.containers[0].resources.requests.memory",
        'expected a quantity such as "500m", "2Gi" or "1", got "2 GB"',
    ),
    (
        "ray-cluster.autoscaler.yaml",
        1,
        lambda d: d["spec"]["autoscalerOptions"].__setitem__("upscalingMode", "Fast"),
        "RayCluster/raycluster-autoscaler",
        "spec.autoscalerOptions.upscalingMode",
        'expected one of "Default", "Aggressive", "Conservative", got "Fast"',
    ),
    (
        "ray-cluster.sample.yaml",
        1,
        lambda d: _head(d)["template"]["spec"].__setitem__("restartPolicy", "Sometimes"),
        "RayCluster/raycluster-kuberay",
        "spec.headGroupSpec.template.spec.restartPolicy",
        'expected one of "Always", "OnFailure", "Never", got "Sometimes"',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        _set(_worker, "replicas", "1"),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].replicas",
        'expected an integer, got "1"',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        _set(_worker, "minReplicas", 20),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].minReplicas",
        "minReplicas 20 is greater than maxReplicas 10; expected minReplicas <= maxReplicas",
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        _set(_worker, "replicas", 11),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].replicas",
        "expected minReplicas <= replicas <= maxReplicas (KubeRay would use 10)",
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        _set(_worker, "maxReplicas", 2**31),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].maxReplicas",
        "expected an int32 (from -2147483648 to 2147483647), got 2147483648",
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        _duplicate_first_container,
        "RayCluster/raycluster-complete",
        "spec.headGroupSpec.template.spec.containers[1]",
        'duplicate entry with name="ray-head" (same as [0]); expected each entry to have a unique name',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        _duplicate_first_worker_group,
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[1].groupName",
        'duplicate worker group name "small-group" (same as workerGroupSpecs[0]); expected unique group names',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _container(_head(d))["ports"].append({"containerPort": 8265, "protocol": "TCP"}),
        "RayCluster/raycluster-complete",
        "spec.headGroupSpec.template.spec.containers[0].ports[3]",
        'duplicate entry with containerPort=8265, protocol="TCP" (same as [1])',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _container(_head(d)).__setitem__(
            "env",
            [
                {"name": "RAY_GRAFANA_HOST", "value": "a"},
                {"name": "RAY_GRAFANA_HOST", "value": "b"},
            ],
        ),
        "RayCluster/raycluster-complete",
        "spec.headGroupSpec.template.spec.containers[0].env[1]",
        'duplicate entry with name="RAY_GRAFANA_HOST" (same as [0]); expected each entry to have a unique name',
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _container(_head(d)).__setitem__(
            "restartPolicyRules",
            [{"action": "Restart", "exitCodes": {"operator": "In", "values": [42, 43, 42]}}],
        ),
        "RayCluster/raycluster-complete",
        "spec.headGroupSpec.template.spec.containers[0].restartPolicyRules[0].exitCodes.values[2]",
        "duplicate value 42 (an integer) (same as [0]); expected each value once",
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _worker(d)["template"]["spec"].pop("containers"),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].template.spec.containers",
        "required field is missing; expected a list",
    ),
    (
        "ray-cluster.sample.yaml",
        1,
        lambda d: d["metadata"].__setitem__("name", "RayCluster-Kuberay"),
        "RayCluster/RayCluster-Kuberay",
        "metadata.name",
        '"RayCluster-Kuberay" is not a valid RayCluster name; expected a DNS-1035 label',
    ),
    (
        "ray-job.shutdown.yaml",
        1,
        lambda d: d["metadata"].__setitem__("name", "rayjob-sample-shutdown-" + "x" * 25),
        "RayJob/rayjob-sample-shutdown-" + "x" * 25,
        "metadata.name",
        "48 characters is too long; expected at most 47 for a RayJob name",
    ),
    (
        "ray-job.pytorch-distributed-training.yaml",
        1,
        lambda d: d["metadata"].__setitem__("generateName", "pytorch-text-classifier-" + "x" * 19),
        "RayJob/pytorch-text-classifier-" + "x" * 19 + "*",
        "metadata.generateName",
        "43 characters is too long; expected at most 42 for a RayJob",
    ),
    (
        "ray-job.sample.yaml",
        1,
        lambda d: d["spec"].__setitem__("clusterSelector", {"ray.io/cluster": "shared-cluster"}),
        "RayJob/rayjob-sample",
        "spec.clusterSelector",
        "expected exactly one of rayClusterSpec (a new cluster) or clusterSelector (an existing one)",
    ),
    (
        "ray-job.deletion-rules.yaml",
        1,
        _add_deployment_status,
        "RayJob/rayjob-deletion-rules",
        "spec.deletionStrategy.deletionRules[0].condition",
        "JobStatus and JobDeploymentStatus cannot be used together within the same deletion "
        "condition. (CEL rule: !(has(self.jobStatus) && has(self.jobDeploymentStatus)))",
    ),
    (
        "ray-job.deletion-rules.yaml",
        1,
        lambda d: d["spec"]["deletionStrategy"].__setitem__(
            "onSuccess", {"policy": "DeleteCluster"}
        ),
        "RayJob/rayjob-deletion-rules",
        "spec.deletionStrategy",
        "legacy policies (onSuccess/onFailure) and deletionRules cannot be used together",
    ),
    (
        "ray-service.sample.yaml",
        1,
        lambda d: d["spec"].__setitem__("managedBy", "argocd"),
        "RayService/rayservice-sample",
        "spec.managedBy",
        "the managedBy field value must be either 'ray.io/kuberay-operator' or 'kueue.x-k8s.io/multikueue'",
    ),
    (
        "ray-service.sample.yaml",
        1,
        lambda d: d["spec"].__setitem__(
            "serveConfigV2", yaml.safe_load(d["spec"]["serveConfigV2"])
        ),
        "RayService/rayservice-sample",
        "spec.serveConfigV2",
        "expected a string, got a mapping",
    ),
    (
        "ray-cluster.complete.yaml",
        1,
        lambda d: _container(_worker(d))["resources"]["requests"].__setitem__("memory", "2Gi"),
        "RayCluster/raycluster-complete",
        "spec.workerGroupSpecs[0].template.spec.containers[0].resources.requests.memory",
        "2Gi is more than the limit 1Gi; expected at most the limit",
    ),
    (
        "ray-job.batch-inference.yaml",
        1,
        lambda d: _container(d["spec"]["rayClusterSpec"]["headGroupSpec"])["resources"][
            "requests"
        ].__setitem__("nvidia.com/gpu", "2"),
        "RayJob/rayjob-sample",
        'spec.rayClusterSpec.headGroupSpec.template.spec.containers[0].resources.requests["nvidia.com/gpu"]',
        "2 differs from the limit 4; expected requests equal to limits for an extended resource",
    ),
    (
        "ray-job.sample.yaml",
        2,
        lambda d: d["data"].__setitem__("big.bin", "x" * (1 << 20)),
        "ConfigMap/ray-job-code-sample",
        "data",
        "about 1.0 MiB of data; expected at most 1 MiB",
    ),
    (
        "ray-job.sample.yaml",
        2,
        lambda d: d["data"].__setitem__("port", 8080),
        "ConfigMap/ray-job-code-sample",
        "data.port",
        "expected a string, got 8080 (an integer)",
    ),
    (
        "ray-job.sample.yaml",
        2,
        lambda d: d.__setitem__("kind", "ConfigMapp"),
        "ConfigMapp/ray-job-code-sample",
        "kind",
        'unknown kind "ConfigMapp"; expected one of: ConfigMap (v1), Kustomization',
    ),
]


@needs_shared
@pytest.mark.parametrize(
    ("sample", "index", "change", "label", "path", "expected"),
    PLANTED,
    ids=[f"{p[0]}:{p[4]}:{i}" for i, p in enumerate(PLANTED)],
)
def test_a_planted_mistake_is_one_line_naming_document_field_and_expectation(
    tmp_path: Path,
    sample: str,
    index: int,
    change: Callable[[Any], None],
    label: str,
    path: str,
    expected: str,
) -> None:
    docs = sample_docs(sample)
    change(docs[index - 1])
    file = tmp_path / sample
    file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    problems = v.validate_paths([file])
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{file}#{index} {label}: {path}: "), problems[0]
    assert expected in problems[0]


def _job_spec(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]


def _job_head_pod(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]


# KubeRay's own checks (validation.go, the webhooks) and the Pod rules the CRD does not carry:
# (sample, change, field path, expected wording); the document is always the first.
KUBERAY_RULES: list[tuple[str, Callable[[Any], None], str, str]] = [
    (
        "ray-job.use-existing-raycluster.yaml",
        lambda d: d["spec"].pop("clusterSelector"),
        "spec",
        "neither rayClusterSpec nor clusterSelector is set; expected exactly one of them",
    ),
    (
        "ray-job.use-existing-raycluster.yaml",
        lambda d: d["spec"].__setitem__("clusterSelector", {"app": "ray"}),
        "spec.clusterSelector",
        'no "ray.io/cluster" key; expected the name of the RayCluster',
    ),
    (
        "ray-job.use-existing-raycluster.yaml",
        lambda d: d["spec"].__setitem__("submissionMode", "SidecarMode"),
        "spec.submissionMode",
        "SidecarMode does not work with clusterSelector",
    ),
    (
        "ray-job.shutdown.yaml",
        lambda d: d["spec"].__setitem__("shutdownAfterJobFinishes", False),
        "spec.ttlSecondsAfterFinished",
        "10 without shutdownAfterJobFinishes; expected shutdownAfterJobFinishes: true",
    ),
    (
        "ray-job.sample.yaml",
        lambda d: d["spec"].__setitem__("runtimeEnvYAML", "pip: [numpy\n"),
        "spec.runtimeEnvYAML",
        "not valid YAML (while parsing a flow sequence at line 1, column 6: did not find expected "
        "',' or ']' at line 2, column 1); expected a YAML mapping",
    ),
    (
        "ray-job.sidecar-mode.yaml",
        lambda d: _job_head_pod(d).__setitem__("restartPolicy", "Always"),
        "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
        '"Always" in SidecarMode; expected Never or unset',
    ),
    (
        "ray-cluster.autoscaler-v2.yaml",
        lambda d: _worker(d)["template"]["spec"].__setitem__("restartPolicy", "OnFailure"),
        "spec.workerGroupSpecs[0].template.spec.restartPolicy",
        '"OnFailure" with autoscaler v2; expected Never or unset',
    ),
    (
        "ray-cluster.complete.yaml",
        lambda d: _head(d)["rayStartParams"].__setitem__("labels", "zone=a"),
        "spec.headGroupSpec.rayStartParams.labels",
        "not supported for the head group; expected the group's labels field instead",
    ),
    (
        "ray-cluster.complete.yaml",
        lambda d: _worker(d)["template"]["spec"].__setitem__(
            "initContainers", [{"name": "ray-worker", "image": "busybox"}]
        ),
        "spec.workerGroupSpecs[0].template.spec.containers[0].name",
        'container name "ray-worker" is also used by initContainers[0]; expected container names '
        "unique across initContainers and containers",
    ),
    (
        "ray-cluster.complete.yaml",
        lambda d: _container(_head(d)).__setitem__("imagePullPolicy", "Sometimes"),
        "spec.headGroupSpec.template.spec.containers[0].imagePullPolicy",
        'expected one of "Always", "Never", "IfNotPresent", got "Sometimes"',
    ),
    (
        "ray-cluster.complete.yaml",
        lambda d: d["metadata"].__setitem__("labels", {"team/ml/x": "a"}),
        'metadata.labels["team/ml/x"]',
        "invalid label key; expected a DNS-1123 subdomain prefix",
    ),
]


@needs_shared
@pytest.mark.parametrize(
    ("sample", "change", "path", "expected"),
    KUBERAY_RULES,
    ids=[f"{r[0]}:{r[2]}" for r in KUBERAY_RULES],
)
def test_kuberay_rules_beyond_the_crd_schema(
    sample: str, change: Callable[[Any], None], path: str, expected: str
) -> None:
    doc = sample_docs(sample)[0]
    change(doc)
    label = v.document_label(f"{sample}#1", doc)
    problems = v.validate_documents([(label, doc)])
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{label}: {path}: "), problems[0]
    assert expected in problems[0]


@needs_shared
def test_a_document_that_is_not_a_mapping_is_named_by_its_position(tmp_path: Path) -> None:
    docs = sample_docs("ray-job.sample.yaml")
    docs[1] = ["a", "list"]
    file = tmp_path / "ray-job.sample.yaml"
    file.write_text(yaml.safe_dump_all(docs))
    assert v.validate_paths([file]) == [
        f"{file}#2: the document is a list; expected a mapping with apiVersion and kind"
    ]


@needs_shared
def test_validate_documents_keeps_the_callers_labels_and_order() -> None:
    job, config_map = sample_docs("ray-job.sample.yaml")
    job["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 1
    job["spec"]["shutdownAfterJobFinishes"] = "yes"
    del config_map["metadata"]["name"]
    # In the order of the document as written: shutdownAfterJobFinishes was added last.
    assert v.validate_documents(
        [("a.yaml#1 RayJob/rayjob-sample", job), ("b#7 x", config_map)]
    ) == [
        "a.yaml#1 RayJob/rayjob-sample: spec.rayClusterSpec.headGroupSpec.rayStartParams.num-cpus: "
        "expected a string, got 1 (an integer); quote it to keep it text",
        "a.yaml#1 RayJob/rayjob-sample: spec.shutdownAfterJobFinishes: expected a boolean "
        '(true or false), got "yes"',
        "b#7 x: metadata.name: required field is missing; expected a name or a generateName",
    ]


# ---- CEL rules: every rule of the shipped schemas runs, or is a transition rule ------------


def _rules(schema: Any, at: str = "") -> list[tuple[str, dict[str, Any], str]]:
    found: list[tuple[str, dict[str, Any], str]] = []
    if isinstance(schema, dict):
        found += [(at, schema, r["rule"]) for r in schema.get("x-kubernetes-validations", [])]
        for key, sub in schema.get("properties", {}).items():
            found += _rules(sub, f"{at}.{key}")
        for key in ("items", "additionalProperties"):
            found += _rules(schema.get(key), f"{at}[]")
    return found


def test_every_cel_rule_in_the_shipped_schemas_evaluates_or_is_a_transition_rule() -> None:
    rules = [
        (kind, at, schema, rule)
        for kind in ("raycluster", "rayjob", "rayservice")
        for at, schema, rule in _rules(json.loads((v.SCHEMA_DIR / f"{kind}.v1.json").read_text()))
    ]
    assert len(rules) == 17  # KubeRay v1.7.0 (v1): 3 in RayCluster, 9 in RayJob, 5 in RayService
    transition = {rule for _k, _a, _s, rule in rules if v.is_transition_rule(rule)}
    assert transition == {"self == oldSelf"}
    for kind, at, schema, rule in rules:
        if rule in transition:
            continue
        empty = {} if schema.get("type") == "object" else ""
        assert isinstance(v.evaluate_cel(rule, empty), bool), (kind, at, rule)


def test_cel_rules_judge_values_as_kubernetes_does() -> None:
    condition = "has(self.jobStatus) || has(self.jobDeploymentStatus)"
    assert v.evaluate_cel(condition, {"jobStatus": "FAILED", "ttlSeconds": 0})
    assert not v.evaluate_cel(condition, {"ttlSeconds": 30})
    managed = "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']"
    assert v.evaluate_cel(managed, "kueue.x-k8s.io/multikueue")
    assert not v.evaluate_cel(managed, "argocd")


# ---- schema drift ------------------------------------------------------------------------


@needs_shared
def test_the_shipped_schemas_are_what_the_extractor_makes_from_the_crds() -> None:
    spec = importlib.util.spec_from_file_location(
        "extract_crd_schemas", REPO / "tools" / "extract_crd_schemas.py"
    )
    assert spec and spec.loader
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    built = tool.build_schemas(CRDS)
    shipped = {p.name: p.read_text(encoding="utf-8") for p in v.SCHEMA_DIR.glob("*.json")}
    assert sorted(built) == sorted(shipped)
    for name, text in built.items():
        assert shipped[name] == text, f"{name} is stale: run tools/extract_crd_schemas.py"


# ---- files, folders, YAML and the kinds `render` emits -------------------------------------


def test_file_problems_are_one_line_each(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("kind: RayJob\nspec: [1, 2\n")
    (tmp_path / "binary.yml").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "empty").mkdir()
    (tmp_path / "dup.yaml").write_text(
        TINY_CLUSTER.replace("  name: tiny\n", "  name: tiny\n  name: tiny\n")
    )
    problems = v.validate_paths(
        [
            tmp_path / "broken.yaml",
            tmp_path / "binary.yml",
            tmp_path / "empty",
            tmp_path / "nope",
            tmp_path / "dup.yaml",
        ]
    )
    assert problems == [
        f"{tmp_path / 'empty'}: no *.yaml or *.yml files in this folder",
        f"{tmp_path / 'nope'}: no such file or folder",
        f"{tmp_path / 'broken.yaml'}#1: not valid YAML: while parsing a flow sequence at line 2, "
        "column 7: did not find expected ',' or ']' at line 3, column 1",
        f"{tmp_path / 'binary.yml'}: not UTF-8 text; expected a YAML file",
        f'{tmp_path / "dup.yaml"}#1 RayCluster/tiny: line 5: duplicate key "name"; expected each '
        "key once (the API server rejects duplicate fields)",
    ]


def test_a_tiny_cluster_passes_and_dates_stay_strings(tmp_path: Path) -> None:
    # PyYAML would read 2026-01-31 as a date; Kubernetes reads a string (an annotation value).
    # `rayStartParams:` is null, which the API server prunes; creationTimestamp may be null.
    (tmp_path / "c.yaml").write_text("---\n" + TINY_CLUSTER + "---\n")
    report = v.check_paths([tmp_path])
    assert (report.problems, report.documents, report.files) == ([], 1, 1)


def test_missing_apiversion_and_a_v1alpha1_object_are_reported(tmp_path: Path) -> None:
    file = tmp_path / "m.yaml"
    old = TINY_CLUSTER.replace("ray.io/v1", "ray.io/v1alpha1")
    file.write_text(TINY_CLUSTER.replace("apiVersion: ray.io/v1\n", "") + "---\n" + old)
    assert v.validate_paths([file]) == [
        f'{file}#1 RayCluster/tiny: apiVersion: required field is missing; expected e.g. "ray.io/v1"',
        f'{file}#2 RayCluster/tiny: apiVersion: "ray.io/v1alpha1" is not checked for RayCluster; '
        'expected "ray.io/v1"',
    ]


CORE_KINDS = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: ft-runner, namespace: ml}
---
apiVersion: v1
kind: Secret
metadata: {name: hf-token, namespace: ml}
type: Opaque
stringData: {HF_TOKEN: abc}
data: {extra: aGVsbG8=}
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: checkpoints, namespace: ml}
spec:
  accessModes: [ReadWriteMany]
  storageClassName: standard
  resources: {requests: {storage: 100Gi}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: spec, namespace: ml}
data: {spec.yaml: "model: x"}
"""


def test_nulls_are_kept_where_nullable_and_pruned_elsewhere_as_the_api_server_does() -> None:
    claim = yaml.safe_load(CORE_KINDS.split("---\n")[2])
    claim["spec"]["storageClassName"] = None  # nullable: null means "no class", kept
    claim["spec"]["volumeMode"] = None  # not nullable: pruned, as if unset
    assert v.validate_documents([("pvc", claim)]) == []
    claim["spec"]["accessModes"] = None  # pruned, and then a required field is missing
    assert v.validate_documents([("pvc", claim)]) == [
        "pvc: spec.accessModes: required field is missing; expected a list"
    ]


def test_the_core_kinds_render_emits_pass_and_their_mistakes_are_caught(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(CORE_KINDS)
    assert v.validate_paths([good]) == []
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        CORE_KINDS.replace("[ReadWriteMany]", "[ReadWriteAll]")
        .replace("{storage: 100Gi}", "{storag: 100Gi}")
        .replace("aGVsbG8=", "not base64!")
        .replace("spec.yaml:", "spec yaml:")
        .replace("namespace: ml}\ntype", "namespace: ML}\ntype")
    )
    assert v.validate_paths([bad]) == [
        f'{bad}#2 Secret/hf-token: metadata.namespace: "ML" is not a valid namespace; expected a '
        "DNS-1123 label: lowercase letters, digits and '-', starting and ending with a letter or digit",
        f"{bad}#2 Secret/hf-token: data.extra: expected a string matching "
        r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
        ', got "not base64!"',
        f'{bad}#3 PersistentVolumeClaim/checkpoints: spec.accessModes[0]: expected one of "ReadWriteOnce", '
        '"ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod", got "ReadWriteAll"',
        f"{bad}#3 PersistentVolumeClaim/checkpoints: spec.resources.requests.storage: required field is "
        'missing; expected a quantity such as "500m", "2Gi" or "1"',
        f'{bad}#4 ConfigMap/spec: data["spec yaml"]: invalid key; expected at most 253 characters of '
        "letters, digits, '-', '_' or '.' (and not '.' or '..')",
    ]


def test_a_kustomization_is_accepted_and_names_files_that_exist(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(TINY_CLUSTER)
    # A patch is a partial object: it is parsed, not validated as a manifest.
    (tmp_path / "patch.yaml").write_text(
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata: {name: tiny}\nspec: {suspend: true}\n"
    )
    kustomization = tmp_path / "kustomization.yaml"
    kustomization.write_text(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: ml\n"
        "resources: [cluster.yaml]\npatches: [{path: patch.yaml}]\n"
    )
    report = v.check_paths([tmp_path])
    assert (report.problems, report.documents, report.files, report.patch_files) == ([], 3, 3, 1)
    kustomization.write_text(
        "resources: [cluster.yaml, gone.yaml]\nnamePrefx: a-\npatches: [{path: patch.yaml}]\n"
    )
    assert v.validate_paths([tmp_path]) == [
        f'{kustomization}#1 Kustomization: resources[1]: "gone.yaml" does not exist (looked for '
        f"{tmp_path / 'gone.yaml'}); expected a file or folder next to the kustomization",
        f'{kustomization}#1 Kustomization: namePrefx: unknown field "namePrefx"; did you mean "namePrefix"?',
    ]


# ---- the command -------------------------------------------------------------------------


@needs_shared
def test_the_command_passes_the_samples() -> None:
    result = runner.invoke(app, ["k8s", "validate", str(SAMPLES)])
    assert result.exit_code == 0, result.output
    assert result.output == "ok: 18 documents in 12 files\n"


def test_the_command_exits_2_with_error_lines_and_no_traceback(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(TINY_CLUSTER)
    bad.write_text(TINY_CLUSTER.replace('cpu: "1"', "cpu: 0.5").replace("name: tiny", "name: Tiny"))
    result = runner.invoke(app, ["k8s", "validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert result.output.splitlines() == [
        f'error: {bad}#1 RayCluster/Tiny: metadata.name: "Tiny" is not a valid RayCluster name; '
        "expected a DNS-1035 label: lowercase letters, digits and '-', starting with a letter and "
        "ending with a letter or digit",
        f"error: {bad}#1 RayCluster/Tiny: spec.headGroupSpec.template.spec.containers[0].resources."
        'limits.cpu: expected an integer or a quantity string such as "500m", got 0.5 (a number); '
        'quote it: "0.5"',
    ]
    result = runner.invoke(app, ["k8s", "validate", str(good)])
    assert (result.exit_code, result.output) == (0, "ok: 1 document in 1 file\n")


def test_the_installed_command_reports_on_stderr(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(TINY_CLUSTER.replace("containers:", "containerz:"))
    done = subprocess.run(
        [sys.executable, "-m", "raytune_ft", "k8s", "validate", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines() == [
        f"error: {bad}#1 RayCluster/tiny: spec.headGroupSpec.template.spec.containerz: unknown "
        'field "containerz"; did you mean "containers"?',
        f"error: {bad}#1 RayCluster/tiny: spec.headGroupSpec.template.spec.containers: required "
        "field is missing; expected a list",
    ]
