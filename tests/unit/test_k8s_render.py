"""`raytune-ft k8s render`: a base case, then cases that each change one dimension.

Every render goes through `render_spec`, which also validates every object against the KubeRay
v1.7.0 CRDs and the core kinds' schemas (a render that fails that raises). The facts asserted
are the ones a cluster depends on: no Ray work on the head, GPUs requested exactly and their
taint tolerated, a memory-backed /dev/shm, autoscaling bounds, a job that runs the spec from
its ConfigMap and cleans up after itself, storage mounted at the same path everywhere,
non-root pods, and secrets only by reference.
"""

from __future__ import annotations

import base64
import copy
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.errors import UserError
from raytune_ft.k8s import render as r
from raytune_ft.k8s.manifests import manifest_files, render_spec, write_files
from raytune_ft.k8s.validate import validate_documents

runner = CliRunner()
DATA = "text\tlabel\ngood film\t1\nbad film\t0\nfine\t1\nawful\t0\n"
CPU_GROUP = {"name": "cpu", "cpus": 4, "memory": "16Gi", "min_nodes": 1, "max_nodes": 3}
GPU_GROUP = {
    "name": "gpu-a10",
    "cpus": 7,
    "memory": "28Gi",
    "gpus": 1,
    "max_nodes": 4,
    "resources": {"accelerator_type:A10G": 1},
    "node_selector": {"node.kubernetes.io/instance-type": "g5.2xlarge"},
}
# Names of variables that carry credentials (AWS_SECRET_ACCESS_KEY, RAY_AUTH_TOKEN, ...).
SECRET_NAME = re.compile(r"(^|_)(SECRET|TOKEN|PASSWORD|ACCESS_KEY|API_KEY|CREDENTIALS)(_|$)", re.I)


def base_spec(**sections: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "demo",
        "model": {"name_or_path": "all-MiniLM-L6-v2"},
        "data": {"train": {"path": "data/train.tsv"}},
        "storage": {"path": "/mnt/runs"},
        "cluster": {
            "node_groups": [CPU_GROUP],
            "kubernetes": {"namespace": "ml", "image": "registry.example/raytune-ft:0.1.0"},
        },
    }
    spec.update(sections)
    return spec


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.yaml") -> Path:
    (folder / "data").mkdir(parents=True, exist_ok=True)
    (folder / "data" / "train.tsv").write_text(DATA)
    path = folder / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def objects_of(
    folder: Path, spec: dict[str, Any], sets: list[str] | None = None, cluster: Path | None = None
) -> dict[str, dict[str, Any]]:
    rendered = render_spec(write_spec(folder, spec), sets or [], cluster)
    kinds = [o["kind"] for o in rendered]
    assert len(kinds) == len(set(kinds))
    return {o["kind"]: o for o in rendered}


def with_cluster(**changes: Any) -> dict[str, Any]:
    """The base spec with fields of cluster (node_groups, kubernetes...) replaced."""
    spec = base_spec()
    spec["cluster"] = {**spec["cluster"], **changes}
    return spec


def kube(**fields: Any) -> dict[str, Any]:
    return {"namespace": "ml", "image": "registry.example/raytune-ft:0.1.0", **fields}


def cluster_specs(objs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [objs["RayCluster"]["spec"], objs["RayJob"]["spec"]["rayClusterSpec"]]


def ray_pods(objs: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(head|worker group name, pod spec) of both the RayCluster and the RayJob's cluster."""
    for cluster in cluster_specs(objs):
        yield "head", cluster["headGroupSpec"]["template"]["spec"]
        for group in cluster["workerGroupSpecs"]:
            yield group["groupName"], group["template"]["spec"]


def all_pods(objs: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    yield from (pod for _, pod in ray_pods(objs))
    yield objs["RayJob"]["spec"]["submitterPodTemplate"]["spec"]


def all_containers(objs: dict[str, dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for pod in all_pods(objs):
        yield from pod["containers"]
        yield from pod.get("initContainers", [])


def workers(objs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return objs["RayCluster"]["spec"]["workerGroupSpecs"]


def entry_args(objs: dict[str, dict[str, Any]]) -> list[str]:
    return shlex.split(objs["RayJob"]["spec"]["entrypoint"])


def sets_of(objs: dict[str, dict[str, Any]]) -> list[str]:
    args = entry_args(objs)
    return [args[i + 1] for i, a in enumerate(args) if a == "--set"]


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


# ---------------------------------------------------------------------------------- base


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return objects_of(tmp_path_factory.mktemp("base"), base_spec())


def test_base_renders_every_object_and_each_validates(base: dict[str, dict[str, Any]]) -> None:
    assert list(base) == [
        "ServiceAccount",
        "ConfigMap",
        "PersistentVolumeClaim",
        "RayCluster",
        "RayJob",
    ]
    assert validate_documents([(kind, obj) for kind, obj in base.items()]) == []
    for obj in base.values():
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["labels"] == {
            "app.kubernetes.io/name": "raytune-ft",
            "app.kubernetes.io/instance": "demo",
            "app.kubernetes.io/version": "0.1.0",
        }


def test_the_head_runs_no_ray_work_and_serves_the_dashboard_in_the_pod(
    base: dict[str, dict[str, Any]],
) -> None:
    for cluster in cluster_specs(base):
        params = cluster["headGroupSpec"]["rayStartParams"]
        assert params == {"dashboard-host": "0.0.0.0", "num-cpus": "0"}
        head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert [p["containerPort"] for p in head["ports"]] == [6379, 8265, 10001]
        assert head["resources"]["requests"] == head["resources"]["limits"]
        assert head["resources"]["limits"] == {"cpu": "2", "memory": "8Gi"}


def test_workers_autoscale_between_the_groups_bounds(base: dict[str, dict[str, Any]]) -> None:
    for cluster in cluster_specs(base):
        assert cluster["enableInTreeAutoscaling"] is True
        assert cluster["autoscalerOptions"]["upscalingMode"] == "Default"
        assert cluster["autoscalerOptions"]["idleTimeoutSeconds"] > 0
        (group,) = cluster["workerGroupSpecs"]
        assert (group["groupName"], group["replicas"]) == ("cpu", 1)
        assert (group["minReplicas"], group["maxReplicas"]) == (1, 3)
        assert group["rayStartParams"] == {"num-cpus": "4", "num-gpus": "0"}
        resources = group["template"]["spec"]["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"] == {"cpu": "4", "memory": "16Gi"}


def test_every_ray_pod_has_a_memory_backed_dev_shm(base: dict[str, dict[str, Any]]) -> None:
    sizes = {}
    for group, pod in ray_pods(base):
        (volume,) = [v for v in pod["volumes"] if "emptyDir" in v]
        assert volume["emptyDir"]["medium"] == "Memory"
        sizes[group] = volume["emptyDir"]["sizeLimit"]
        mounts = pod["containers"][0]["volumeMounts"]
        assert {"name": volume["name"], "mountPath": "/dev/shm"} in mounts
    assert sizes == {"head": "2Gi", "cpu": "4Gi"}  # a quarter of 8Gi and of 16Gi


def test_the_job_runs_the_spec_from_the_configmap_and_cleans_up(
    base: dict[str, dict[str, Any]],
) -> None:
    job = base["RayJob"]["spec"]
    assert ("rayClusterSpec" in job) != ("clusterSelector" in job)
    assert job["rayClusterSpec"] == base["RayCluster"]["spec"]
    assert job["shutdownAfterJobFinishes"] is True
    assert job["ttlSecondsAfterFinished"] == 600
    assert "activeDeadlineSeconds" not in job
    assert entry_args(base)[:5] == [
        "python",
        "-m",
        "raytune_ft",
        "train",
        "/home/ray/spec/spec.yaml",
    ]
    # The spec file travels as written, at the path the entrypoint names, in every Ray pod.
    config_map = base["ConfigMap"]
    for _, pod in ray_pods(base):
        (volume,) = [v for v in pod["volumes"] if "configMap" in v]
        assert volume["configMap"]["name"] == config_map["metadata"]["name"]
        by_path = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
        assert by_path == {"spec.yaml": "spec.yaml", "data/train.tsv": "data__train.tsv"}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "spec")
        assert (mount["mountPath"], mount["readOnly"]) == ("/home/ray/spec", True)
    assert config_map["data"]["data__train.tsv"] == DATA


def test_a_local_storage_path_is_a_rwx_volume_at_the_same_path_everywhere(
    base: dict[str, dict[str, Any]],
) -> None:
    pvc = base["PersistentVolumeClaim"]
    assert pvc["metadata"]["name"] == "demo-storage"
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    for _, pod in ray_pods(base):
        (volume,) = [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        assert volume["persistentVolumeClaim"]["claimName"] == "demo-storage"
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
        assert mount["mountPath"] == "/mnt/runs"
    assert "storage.shared=true" in sets_of(base)


def test_every_pod_and_container_runs_as_non_root_without_escalation(
    base: dict[str, dict[str, Any]],
) -> None:
    pods = list(all_pods(base))
    assert len(pods) == 5  # head and one worker group, twice, and the submitter
    for pod in pods:
        context = pod["securityContext"]
        assert (context["runAsNonRoot"], context["runAsUser"]) == (True, 1000)
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["serviceAccountName"] == "demo-ray"
    containers = list(all_containers(base))
    contexts = [c["securityContext"] for c in containers]
    contexts += [c["autoscalerOptions"]["securityContext"] for c in cluster_specs(base)]
    for context in contexts:
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 1000
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"] == {"drop": ["ALL"]}
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in containers:
        assert container["image"] == "registry.example/raytune-ft:0.1.0"
        assert container["imagePullPolicy"] == "IfNotPresent"


def test_only_the_head_mounts_the_service_account_token(base: dict[str, dict[str, Any]]) -> None:
    assert base["ServiceAccount"]["metadata"]["name"] == "demo-ray"
    assert base["ServiceAccount"]["automountServiceAccountToken"] is False
    mounted = {group: pod["automountServiceAccountToken"] for group, pod in ray_pods(base)}
    assert mounted == {"head": True, "cpu": False}  # the autoscaler sidecar needs the API
    assert (
        base["RayJob"]["spec"]["submitterPodTemplate"]["spec"]["automountServiceAccountToken"]
        is False
    )


# ---------------------------------------------------------------------------------- one dimension


def test_a_gpu_group_requests_its_gpus_exactly_and_tolerates_their_taint(tmp_path: Path) -> None:
    objs = objects_of(tmp_path, with_cluster(node_groups=[CPU_GROUP, GPU_GROUP]))
    for cluster in cluster_specs(objs):
        cpu, gpu = cluster["workerGroupSpecs"]
        pod = gpu["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        assert resources["requests"] == resources["limits"]
        assert resources["limits"] == {"cpu": "7", "memory": "28Gi", "nvidia.com/gpu": "1"}
        assert pod["tolerations"] == [
            {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
        ]
        assert pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "g5.2xlarge"}
        assert gpu["rayStartParams"]["num-gpus"] == "1"
        assert "tolerations" not in cpu["template"]["spec"]
        assert "nodeSelector" not in cpu["template"]["spec"]
        shm = next(v for v in pod["volumes"] if v["name"] == "dshm")
        assert shm["emptyDir"] == {"medium": "Memory", "sizeLimit": "7Gi"}


def ray_autoscaler_custom_resources(value: str) -> dict[str, int]:
    """What Ray 2.60's KubeRay autoscaler does with rayStartParams.resources
    (ray/autoscaler/_private/kuberay/autoscaling_config.py, _get_custom_resources)."""
    resources = json.loads(value[1:-1].replace("\\", ""))
    assert all(isinstance(v, int) for v in resources.values())
    return resources


def test_custom_resources_are_in_the_form_the_autoscaler_and_ray_start_read(
    tmp_path: Path,
) -> None:
    group = {**GPU_GROUP, "resources": {"accelerator_type:A10G": 1, "spot": 2}}
    objs = objects_of(tmp_path, with_cluster(node_groups=[group]))
    value = workers(objs)[0]["rayStartParams"]["resources"]
    assert value == '"{\\"accelerator_type:A10G\\": 1, \\"spot\\": 2}"'
    assert ray_autoscaler_custom_resources(value) == {"accelerator_type:A10G": 1, "spot": 2}
    # KubeRay writes `ray start --resources=VALUE` into a shell command: one word, real JSON.
    (word,) = shlex.split(f"--resources={value}")
    assert json.loads(word.removeprefix("--resources=")) == {"accelerator_type:A10G": 1, "spot": 2}


def test_a_fractional_node_resource_is_refused(tmp_path: Path) -> None:
    group = {**GPU_GROUP, "resources": {"accelerator_type:A10G": 0.5}}
    with pytest.raises(UserError) as caught:
        objects_of(tmp_path, with_cluster(node_groups=[group]))
    assert caught.value.problems == [
        "cluster.node_groups[0].resources: accelerator_type:A10G: 0.5; expected a whole number "
        "(the KubeRay autoscaler reads whole amounts per node)"
    ]


def test_given_tolerations_are_kept_and_the_gpu_one_not_repeated(tmp_path: Path) -> None:
    group = {
        **GPU_GROUP,
        "gpu_resource": "amd.com/gpu",
        "tolerations": [
            {"key": "amd.com/gpu", "operator": "Exists"},
            {"key": "dedicated", "value": "training", "effect": "NoExecute"},
        ],
    }
    objs = objects_of(tmp_path, with_cluster(node_groups=[group]))
    pod = workers(objs)[0]["template"]["spec"]
    assert pod["tolerations"] == [
        {"key": "amd.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "training", "effect": "NoExecute"},
    ]
    assert pod["containers"][0]["resources"]["limits"]["amd.com/gpu"] == "1"


def test_without_node_groups_one_group_sized_to_one_worker_scales_from_zero(
    tmp_path: Path,
) -> None:
    spec = with_cluster(node_groups=[])
    spec["scaling"] = {"num_workers": 2, "cpus_per_worker": 3}
    spec["sweep"] = {
        "max_concurrent_trials": 3,
        "space": {"train.learning_rate": {"choice": [1e-4]}},
    }
    objs = objects_of(tmp_path, spec)
    (group,) = workers(objs)
    assert (group["groupName"], group["replicas"]) == ("cpu", 0)
    assert (group["minReplicas"], group["maxReplicas"]) == (0, 6)
    assert group["rayStartParams"] == {"num-cpus": "3", "num-gpus": "0"}
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "3", "memory": "8Gi"}
    # The job's copy of the spec declares no groups: it is told the ones the autoscaler has.
    declared = next(s for s in sets_of(objs) if s.startswith("cluster.node_groups="))
    assert json.loads(declared.partition("=")[2]) == [
        {"name": "cpu", "cpus": 3, "memory": "8Gi", "max_nodes": 6}
    ]


def test_without_node_groups_use_gpu_true_gives_the_group_gpus(tmp_path: Path) -> None:
    spec = with_cluster(node_groups=[])
    spec["scaling"] = {"num_workers": 4, "use_gpu": True, "gpus_per_worker": 0.5}
    objs = objects_of(tmp_path, spec)
    (group,) = workers(objs)
    assert (group["groupName"], group["maxReplicas"]) == ("gpu", 4)
    limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1"
    assert group["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_a_gpu_run_without_gpu_nodes_is_refused_before_the_cluster_starts(
    tmp_path: Path,
) -> None:
    spec = base_spec(scaling={"use_gpu": True})
    with pytest.raises(UserError) as caught:
        objects_of(tmp_path, spec)
    assert caught.value.problems == [
        "scaling.use_gpu: true, but no node group has GPUs (cluster.node_groups)"
    ]


def test_s3_storage_has_no_volume_and_credentials_only_by_reference(tmp_path: Path) -> None:
    spec = with_cluster(kubernetes=kube(credentials_secret="aws-creds"))
    spec["storage"] = {"path": "s3://bucket/runs", "region": "eu-west-1"}
    objs = objects_of(tmp_path, spec)
    assert "PersistentVolumeClaim" not in objs
    assert "storage.shared=true" not in sets_of(objs)
    for _, pod in ray_pods(objs):
        assert not [v for v in pod["volumes"] if "persistentVolumeClaim" in v]
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in pod["containers"][0]["env"]}
        assert env == {
            "AWS_ACCESS_KEY_ID": {"name": "aws-creds", "key": "AWS_ACCESS_KEY_ID"},
            "AWS_SECRET_ACCESS_KEY": {"name": "aws-creds", "key": "AWS_SECRET_ACCESS_KEY"},
            "AWS_SESSION_TOKEN": {
                "name": "aws-creds",
                "key": "AWS_SESSION_TOKEN",
                "optional": True,
            },
        }


def test_gcs_storage_mounts_the_key_file_from_the_secret(tmp_path: Path) -> None:
    spec = with_cluster(kubernetes=kube(credentials_secret="gcs-key"))
    spec["storage"] = {"path": "gs://bucket/runs"}
    objs = objects_of(tmp_path, spec)
    for _, pod in ray_pods(objs):
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == "gcs-key"
        assert volume["secret"]["items"] == [
            {"key": "GOOGLE_APPLICATION_CREDENTIALS_JSON", "path": "key.json"}
        ]
        container = pod["containers"][0]
        mount = next(m for m in container["volumeMounts"] if m["name"] == volume["name"])
        (env,) = container["env"]
        assert env["name"] == "GOOGLE_APPLICATION_CREDENTIALS"
        assert env["value"] == f"{mount['mountPath']}/key.json"
        assert mount["readOnly"] is True


def test_object_storage_without_a_secret_uses_the_pods_identity(tmp_path: Path) -> None:
    objs = objects_of(tmp_path, base_spec(storage={"path": "s3://bucket/runs"}))
    for container in all_containers(objs):
        assert "env" not in container


def test_a_credentials_secret_with_a_volume_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"^cluster\.kubernetes\.credentials_secret: 'c' is set"):
        objects_of(tmp_path, with_cluster(kubernetes=kube(credentials_secret="c")))


def test_token_auth_uses_kuberays_auth_options(tmp_path: Path) -> None:
    objs = objects_of(tmp_path, with_cluster(kubernetes=kube(ray_token_secret="ray-token")))
    for cluster in cluster_specs(objs):
        assert cluster["authOptions"] == {"mode": "token", "secretName": "ray-token"}
    assert "authOptions" not in objects_of(tmp_path / "no", base_spec())["RayCluster"]["spec"]


def test_no_credential_appears_as_a_literal_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    planted = "planted-secret-value-1234"
    for name in ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "RAY_AUTH_TOKEN"):
        monkeypatch.setenv(name, planted)
    spec = with_cluster(kubernetes=kube(credentials_secret="aws", ray_token_secret="tok"))
    spec["storage"] = {"path": "s3://bucket/runs"}
    spec["cluster"]["runtime_env"] = {"env_vars": {"HF_HOME": "/tmp/hf"}}
    objs = objects_of(tmp_path, spec)
    assert planted not in json.dumps(objs)
    mounted_secrets = {
        m["mountPath"]
        for pod in all_pods(objs)
        for c in pod["containers"]
        for m in c.get("volumeMounts", [])
        if any(v["name"] == m["name"] and "secret" in v for v in pod["volumes"])
    }
    envs = [e for c in all_containers(objs) for e in c.get("env", [])]
    assert envs
    for env in envs:
        if not SECRET_NAME.search(env["name"]):
            continue
        if "value" in env:  # only a path into a mounted Secret may be literal
            assert any(env["value"].startswith(p + "/") for p in mounted_secrets), env
        else:
            assert set(env["valueFrom"]) == {"secretKeyRef"}, env
    runtime_env = yaml.safe_load(objs["RayJob"]["spec"]["runtimeEnvYAML"])
    assert not [k for k in runtime_env["env_vars"] if SECRET_NAME.search(k)]


def test_runtime_env_carries_the_specs_env_vars_and_pip(tmp_path: Path) -> None:
    spec = with_cluster(runtime_env={"env_vars": {"HF_HOME": "/mnt/runs/hf"}, "pip": ["rich"]})
    objs = objects_of(tmp_path, spec)
    runtime_env = yaml.safe_load(objs["RayJob"]["spec"]["runtimeEnvYAML"])
    assert runtime_env["pip"] == ["rich"]
    assert runtime_env["env_vars"]["HF_HOME"] == "/mnt/runs/hf"
    assert runtime_env["env_vars"]["RAY_TRAIN_HEALTH_CHECK_INTERVAL_S"] == "0.2"
    plain = objects_of(tmp_path / "plain", base_spec())["RayJob"]["spec"]["runtimeEnvYAML"]
    assert "pip" not in yaml.safe_load(plain)


def test_a_sweep_runs_tune_and_passes_the_users_sets_through(tmp_path: Path) -> None:
    spec = base_spec(sweep={"space": {"train.learning_rate": {"loguniform": [1e-5, 1e-3]}}})
    objs = objects_of(tmp_path, spec, ["train.epochs=2", "sweep.num_samples=4"])
    args = entry_args(objs)
    assert args[3:5] == ["tune", "/home/ray/spec/spec.yaml"]
    assert sets_of(objs) == ["train.epochs=2", "sweep.num_samples=4", "storage.shared=true"]


def test_deadline_and_ttl_come_from_the_spec(tmp_path: Path) -> None:
    spec = with_cluster(
        kubernetes=kube(ttl_seconds_after_finished=60, active_deadline_seconds=7200)
    )
    job = objects_of(tmp_path, spec)["RayJob"]["spec"]
    assert (job["ttlSecondsAfterFinished"], job["activeDeadlineSeconds"]) == (60, 7200)


def test_a_named_service_account_is_used_not_rendered(tmp_path: Path) -> None:
    objs = objects_of(tmp_path, with_cluster(kubernetes=kube(service_account="team-ray")))
    assert "ServiceAccount" not in objs
    assert {pod["serviceAccountName"] for pod in all_pods(objs)} == {"team-ray"}


def test_an_existing_claim_is_mounted_but_not_rendered(tmp_path: Path) -> None:
    spec = with_cluster(kubernetes=kube(pvc={"name": "shared-runs", "create": False}))
    objs = objects_of(tmp_path, spec)
    assert "PersistentVolumeClaim" not in objs
    for _, pod in ray_pods(objs):
        claims = [
            v["persistentVolumeClaim"]["claimName"]
            for v in pod["volumes"]
            if "persistentVolumeClaim" in v
        ]
        assert claims == ["shared-runs"]


def test_a_model_folder_beside_the_spec_travels_in_its_layout(tmp_path: Path) -> None:
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"model_type": "llama"}\n')
    (model / "tokenizer.json").write_text("{}\n")
    spec = base_spec(model={"name_or_path": "models/tiny", "init": "random"})
    objs = objects_of(tmp_path, spec)
    (volume,) = [v for _, pod in ray_pods(objs) for v in pod["volumes"] if "configMap" in v][:1]
    paths = [item["path"] for item in volume["configMap"]["items"]]
    assert paths == [
        "spec.yaml",
        "data/train.tsv",
        "models/tiny/config.json",
        "models/tiny/tokenizer.json",
    ]


def test_a_model_folder_not_written_beside_the_spec_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = tmp_path / "models" / "tiny"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}\n")
    absolute = base_spec(model={"name_or_path": str(model), "init": "random"})
    with pytest.raises(UserError, match=r"^model\.name_or_path: /.* is a path of this machine"):
        objects_of(tmp_path, absolute)
    monkeypatch.chdir(tmp_path)  # models/tiny exists here, not beside the spec in specs/
    from_cwd = base_spec(model={"name_or_path": "models/tiny", "init": "random"})
    with pytest.raises(UserError, match=r"is a folder of the working directory, not beside"):
        objects_of(tmp_path / "specs", from_cwd)


EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.yaml"))


@pytest.mark.parametrize("spec_file", EXPERIMENTS, ids=[p.stem for p in EXPERIMENTS])
def test_every_example_spec_renders_valid_objects(spec_file: Path) -> None:
    objs = render_spec(spec_file, ["storage.path=/mnt/raytune-ft"])
    assert validate_documents([(o["kind"], o) for o in objs]) == []
    job = next(o for o in objs if o["kind"] == "RayJob")
    kind = "tune" if "sweep" in yaml.safe_load(spec_file.read_text()) else "train"
    assert shlex.split(job["spec"]["entrypoint"])[3:5] == [kind, f"/home/ray/spec/{spec_file.name}"]


# ---------------------------------------------------------------------------------- cluster files


def test_a_cluster_file_replaces_the_specs_cluster_section(tmp_path: Path) -> None:
    cluster_file = tmp_path / "gpu.yaml"
    cluster_file.write_text(
        yaml.safe_dump(
            {"cluster": {"node_groups": [GPU_GROUP], "kubernetes": kube(namespace="gpu")}}
        )
    )
    objs = objects_of(tmp_path, base_spec(), ["cluster.kubernetes.head.cpus=4"], cluster_file)
    assert {o["metadata"]["namespace"] for o in objs.values()} == {"gpu"}
    assert [g["groupName"] for g in workers(objs)] == ["gpu-a10"]
    head = objs["RayCluster"]["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["limits"]["cpu"] == "4"  # --set applies after the cluster file
    # The job reads the spec file, whose cluster section is the CPU one: it gets the groups.
    declared = next(s for s in sets_of(objs) if s.startswith("cluster.node_groups="))
    assert [g["name"] for g in json.loads(declared.partition("=")[2])] == ["gpu-a10"]


def test_an_error_in_a_cluster_file_names_that_file_and_line(tmp_path: Path) -> None:
    cluster_file = tmp_path / "bad-cluster.yaml"
    cluster_file.write_text(
        "cluster:\n  node_groups:\n    - name: gpu\n      cpus: 8\n      memory: 32Gi\n"
        "      gpus: many\n"
    )
    with pytest.raises(UserError) as caught:
        objects_of(tmp_path, base_spec(), cluster=cluster_file)
    assert caught.value.problems == [
        f"{cluster_file}:6: cluster.node_groups[0].gpus: Input should be a valid integer, "
        "unable to parse string as an integer (got 'many')"
    ]


def test_a_cluster_file_holds_only_a_cluster_section(tmp_path: Path) -> None:
    cluster_file = tmp_path / "c.yaml"
    cluster_file.write_text("cluster: {}\nstorage: {path: /x}\n")
    with pytest.raises(UserError) as caught:
        objects_of(tmp_path, base_spec(), cluster=cluster_file)
    assert caught.value.problems == [
        f"{cluster_file}:2: storage: unknown top-level key; expected a mapping with one key, "
        "cluster (the spec's cluster section)"
    ]
    with pytest.raises(UserError, match="no such cluster file"):
        objects_of(tmp_path, base_spec(), cluster=tmp_path / "missing.yaml")


# ---------------------------------------------------------------------------------- files


def test_files_outside_the_spec_folder_are_refused_unless_on_the_volume(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.tsv").write_text(DATA)
    spec = base_spec(data={"train": {"path": "../elsewhere.tsv"}})
    with pytest.raises(UserError, match=r"^data\.train\.path: .*elsewhere\.tsv is outside"):
        objects_of(tmp_path / "spec", spec)
    # Written as a path of this machine: the job, reading the spec as written, would not find it.
    inside = write_spec(tmp_path / "abs", base_spec()).parent / "data" / "train.tsv"
    spec = base_spec(data={"train": {"path": str(inside)}})
    with pytest.raises(UserError, match=r"^data\.train\.path: /.* is a path of this machine"):
        objects_of(tmp_path / "abs", spec)
    on_volume = base_spec(data={"train": {"path": "/mnt/runs/data/*.tsv"}})
    objs = objects_of(tmp_path / "vol", on_volume)
    assert list(objs["ConfigMap"]["data"]) == ["spec.yaml"]  # read from the volume in the pods


def test_files_round_trip_through_the_written_configmap(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path, base_spec(data={"train": {"path": "data/*.t*"}}))
    crlf = "text\tlabel\r\ncaf\u00e9 \u0085ok\t1\r\nbad\t0\r\n".encode()
    (tmp_path / "data" / "crlf.txt").write_bytes(crlf)
    rendered = manifest_files(render_spec(spec_file, []))
    write_files(tmp_path / "out", rendered.files, force=False)
    config_map = yaml.safe_load((tmp_path / "out" / "configmap.yaml").read_text())
    assert list(config_map["binaryData"]) == ["data__crlf.txt"]
    assert base64.b64decode(config_map["binaryData"]["data__crlf.txt"]) == crlf
    assert (
        config_map["data"]["data__train.tsv"].encode() == (tmp_path / "data/train.tsv").read_bytes()
    )
    assert config_map["data"]["spec.yaml"].encode() == spec_file.read_bytes()


def test_config_keys_are_valid_and_unique() -> None:
    files = [r.ShippedFile("f", rel, b"") for rel in ("a/b.c", "a__b.c", "x y/\u00e9.txt")]
    keys = r.config_keys(files)
    assert keys[:1] == ["a__b.c"] and keys[1].startswith("a__b.c-") and keys[2] == "x_y___.txt"
    assert len(set(keys)) == 3


def test_quarter_keeps_whole_units() -> None:
    assert [r.quarter(m) for m in ("8Gi", "1000Gi", "6Gi", "16G", "1")] == [
        "2Gi",
        "250Gi",
        "1536Mi",
        "4G",
        "0",
    ]


# ---------------------------------------------------------------------------------- the command


def cli_render(folder: Path, spec: dict[str, Any], *extra: str) -> Any:
    spec_file = write_spec(folder, spec)
    return runner.invoke(app, ["k8s", "render", str(spec_file), "-o", str(folder / "out"), *extra])


def test_render_writes_a_kustomization_and_says_what_to_run_next(tmp_path: Path) -> None:
    result = cli_render(tmp_path, base_spec())
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "configmap.yaml",
        "kustomization.yaml",
        "pvc.yaml",
        "raycluster.yaml",
        "rayjob.yaml",
        "serviceaccount.yaml",
    ]
    kustomization = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert kustomization == {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": "ml",
        "resources": ["serviceaccount.yaml", "configmap.yaml", "pvc.yaml", "rayjob.yaml"],
    }
    assert f"raytune-ft k8s validate {out}" in result.output
    assert f"kubectl apply -k {out}" in result.output
    check = runner.invoke(app, ["k8s", "validate", str(out)])
    assert check.exit_code == 0, check.output


def test_rendering_again_is_a_no_op_and_other_content_needs_force(tmp_path: Path) -> None:
    assert cli_render(tmp_path, base_spec()).exit_code == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    again = cli_render(tmp_path, base_spec())
    assert again.exit_code == 0 and "wrote" not in again.output
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    changed = base_spec(train={"epochs": 2})
    refused = cli_render(tmp_path, changed)
    assert refused.exit_code == 2
    assert error_lines(refused.output) == [
        f"error: -o {tmp_path / 'out'}: {name} exists with other content; expected a new or "
        "unchanged file (pass --force to overwrite it)"
        for name in ("configmap.yaml",)  # the spec file changed; the job runs it as before
    ]
    assert {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()} == before
    assert cli_render(tmp_path, changed, "--force").exit_code == 0
    assert (tmp_path / "out" / "configmap.yaml").read_bytes() != before["configmap.yaml"]


def test_a_relative_storage_path_exits_2_naming_the_field(tmp_path: Path) -> None:
    result = cli_render(tmp_path, base_spec(storage={"path": "runs"}))
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert line.startswith("error: storage.path: 'runs' is relative; on Kubernetes expected")
    assert not (tmp_path / "out").exists()


def test_data_too_large_for_a_configmap_exits_2_naming_the_field_and_size(
    tmp_path: Path,
) -> None:
    (tmp_path / "big").mkdir()
    for i in range(3):
        (tmp_path / "big" / f"part{i}.tsv").write_text(DATA + "x\t1\n" * 80_000)
    result = cli_render(tmp_path, base_spec(data={"train": {"path": "big/*.tsv"}}))
    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert line.startswith(
        "error: data.train.path: 3 files, 938 KiB (938 KiB in all with the spec); "
    )
    assert "a ConfigMap carries at most 900 KiB; expected the data on the storage volume" in line


def test_the_rendered_objects_are_not_shared_between_renders(tmp_path: Path) -> None:
    spec_file = write_spec(tmp_path, base_spec())
    first = render_spec(spec_file, [])
    snapshot = copy.deepcopy(first)
    first[3]["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = "8"
    assert render_spec(spec_file, []) == snapshot


def test_every_file_render_reads_is_named_relative_to_the_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec_file = write_spec(tmp_path / "specs", base_spec())
    monkeypatch.chdir(tmp_path)  # render does not depend on the working directory
    written = yaml.safe_load(spec_file.read_text())
    names = [f.rel for f in r.shipped_files(spec_file, load(spec_file), "/mnt/runs", written)]
    assert names == ["spec.yaml", "data/train.tsv"]


def load(spec_file: Path) -> Any:
    from raytune_ft.spec import load_spec

    return load_spec(spec_file)
