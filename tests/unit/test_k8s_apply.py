"""`raytune-ft k8s apply | status | logs | delete` against a fake Kubernetes API on 127.0.0.1.

No real API server runs here (none can on these machines): tests/k8s_api.py wraps kmock so it
answers as one does for what these commands use, validating RayJob and RayCluster against the
KubeRay CRDs. Every request goes over HTTP through the real `kubernetes` client; nothing in the
client is mocked. KubeRay itself is played by `script_status`: each read of a RayJob moves its
status one step on, as the operator would between two polls.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from k8s_api import FakeKubeAPI, closed_port, dumps, write_kubeconfig
from typer.testing import CliRunner

from raytune_ft.cli import app
from raytune_ft.k8s import apply as apply_module

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay" / "samples"
needs_shared = pytest.mark.skipif(
    not SAMPLES.is_dir(), reason="shared/kuberay is not beside the repository"
)
runner = CliRunner()


def rayjob(name: str = "tiny-job", **spec: Any) -> dict[str, Any]:
    """A small valid RayJob (K8sJobMode) that mounts the ConfigMap below."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {"name": name},
        "spec": {
            "entrypoint": "python /code/main.py",
            "rayClusterSpec": {
                "headGroupSpec": {
                    "rayStartParams": {},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "ray-head",
                                    "image": "rayproject/ray:2.52.0",
                                    "resources": {"limits": {"cpu": "1", "memory": "2Gi"}},
                                    "volumeMounts": [{"name": "code", "mountPath": "/code"}],
                                }
                            ],
                            "volumes": [{"name": "code", "configMap": {"name": "code"}}],
                        }
                    },
                }
            },
            **spec,
        },
    }


CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "code"},
    "data": {"main.py": "print('hi')\n"},
}
PVC = {
    "apiVersion": "v1",
    "kind": "PersistentVolumeClaim",
    "metadata": {"name": "results"},
    "spec": {
        "accessModes": ["ReadWriteMany"],
        "storageClassName": "nfs",
        "resources": {"requests": {"storage": "10Gi"}},
    },
}
RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING", "rayClusterName": "c-1"}


@pytest.fixture
def kube() -> Iterator[FakeKubeAPI]:
    with FakeKubeAPI() as fake:
        yield fake


@pytest.fixture
def k8s(kube: FakeKubeAPI, tmp_path: Path) -> Callable[..., Any]:
    """`raytune-ft k8s ARGS... --kubeconfig <the fake's>`; polling without pauses."""
    config = kube.kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str) -> Any:
        extra = ["--poll-interval", "0"] if args[0] in ("apply", "logs") else []
        return runner.invoke(app, ["k8s", *args, *extra, "--kubeconfig", str(config)])

    return run


def write(path: Path, *docs: dict[str, Any]) -> Path:
    path.write_text(dumps(*docs))
    return path


# ---- apply ------------------------------------------------------------------------------------


@needs_shared
def test_apply_creates_the_kuberay_sample_after_a_dry_run_of_each(
    kube: FakeKubeAPI, k8s: Callable[..., Any]
) -> None:
    result = k8s("apply", str(SAMPLES / "ray-job.sample.yaml"))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "created: ConfigMap/ray-job-code-sample (namespace default)",
        "created: RayJob/rayjob-sample (namespace default)",
        "follow it: raytune-ft k8s status rayjob-sample --namespace default; "
        "raytune-ft k8s logs rayjob-sample --namespace default --follow",
    ]
    assert kube.names("rayjobs") == ["rayjob-sample"]
    assert kube.names("configmaps") == ["ray-job-code-sample"]
    stored = kube.get("rayjobs", "rayjob-sample")
    assert stored is not None
    assert stored["spec"]["entrypoint"] == "python /home/ray/samples/sample_code.py"
    # every object through the server's dry run before the first is created
    assert kube.calls("POST") == [
        "POST /api/v1/namespaces/default/configmaps?dryRun=All&fieldManager=raytune-ft",
        "POST /apis/ray.io/v1/namespaces/default/rayjobs?dryRun=All&fieldManager=raytune-ft",
        "POST /api/v1/namespaces/default/configmaps?fieldManager=raytune-ft",
        "POST /apis/ray.io/v1/namespaces/default/rayjobs?fieldManager=raytune-ft",
    ]


def test_dry_run_creates_nothing(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    manifest = write(tmp_path / "job.yaml", rayjob(), CONFIGMAP)
    result = k8s("apply", str(manifest), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "would be created: ConfigMap/code (namespace default)",
        "would be created: RayJob/tiny-job (namespace default)",
        "server dry run: the API server accepted 2 objects; nothing was changed",
    ]
    assert kube.names("rayjobs") == kube.names("configmaps") == []
    assert all("dryRun=All" in call for call in kube.calls("POST"))


def test_applying_a_rayjob_again_is_refused_and_changes_nothing(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    manifest = write(tmp_path / "job.yaml", rayjob(), CONFIGMAP)
    assert k8s("apply", str(manifest)).exit_code == 0
    sent = len(kube.calls())
    changed = write(tmp_path / "job.yaml", rayjob(), {**CONFIGMAP, "data": {"main.py": "new"}})
    result = k8s("apply", str(changed))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {changed}#1 RayJob/tiny-job: RayJob 'tiny-job' already exists in namespace "
        "'default'; a RayJob runs once: delete it first (raytune-ft k8s delete tiny-job "
        "--namespace default) or give the new one another name",
        "error: nothing was changed in the cluster",
    ]
    assert all("dryRun=All" in c or c.startswith("GET") for c in kube.calls()[sent:])
    assert kube.get("configmaps", "code")["data"] == CONFIGMAP["data"]


def test_an_existing_configmap_is_applied_server_side(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    manifest = write(tmp_path / "cm.yaml", CONFIGMAP)
    assert k8s("apply", str(manifest)).stdout == "created: ConfigMap/code (namespace default)\n"
    again = k8s("apply", str(manifest))
    assert (again.exit_code, again.stdout) == (0, "unchanged: ConfigMap/code (namespace default)\n")
    write(manifest, {**CONFIGMAP, "data": {"main.py": "print('v2')\n"}})
    changed = k8s("apply", str(manifest))
    assert changed.stdout == "configured: ConfigMap/code (namespace default)\n"
    assert kube.get("configmaps", "code")["data"] == {"main.py": "print('v2')\n"}
    assert (
        "PATCH /api/v1/namespaces/default/configmaps/code?fieldManager=raytune-ft&force=True"
        in kube.calls()
    )


def test_an_object_the_api_server_rejects_stops_the_apply_before_anything_exists(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    """--no-validate leaves the checking to the server: its 422 causes, one line each."""
    bad = rayjob()
    bad["spec"]["entrypointt"] = bad["spec"].pop("entrypoint")
    bad["spec"]["shutdownAfterJobFinishes"] = "yes"
    manifest = write(tmp_path / "job.yaml", CONFIGMAP, bad)
    result = k8s("apply", str(manifest), "--no-validate")
    assert result.exit_code == 2
    label = f"{manifest}#2 RayJob/tiny-job: the API server refused it"
    assert result.stderr.splitlines() == [
        f'error: {label}: spec.entrypointt: unknown field "entrypointt"; did you mean "entrypoint"?',
        f'error: {label}: spec.shutdownAfterJobFinishes: expected a boolean (true or false), got "yes"',
        "error: nothing was changed in the cluster",
    ]
    assert kube.names("configmaps") == kube.names("rayjobs") == []


def test_a_pvc_change_the_api_server_forbids_is_reported_by_the_dry_run(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    """Valid offline, refused by the server: a bound claim's spec is immutable."""
    manifest = write(tmp_path / "pvc.yaml", PVC)
    assert k8s("apply", str(manifest)).exit_code == 0
    write(manifest, {**PVC, "spec": {**PVC["spec"], "storageClassName": "fast"}})
    result = k8s("apply", str(manifest))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {manifest}#1 PersistentVolumeClaim/results: the API server refused it: spec: "
        "Forbidden: spec is immutable after creation except resources.requests and "
        "volumeAttributesClassName for bound claims",
        "error: nothing was changed in the cluster",
    ]
    assert kube.get("persistentvolumeclaims", "results")["spec"]["storageClassName"] == "nfs"


def test_offline_validation_stops_before_any_connection(tmp_path: Path) -> None:
    bad = rayjob()
    bad["spec"]["entrypointt"] = bad["spec"].pop("entrypoint")
    manifest = write(tmp_path / "job.yaml", bad)
    with FakeKubeAPI() as kube:
        config = kube.kubeconfig(tmp_path / "kubeconfig")
        result = runner.invoke(app, ["k8s", "apply", str(manifest), "--kubeconfig", str(config)])
        assert kube.calls() == []
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == "error: nothing was sent to the cluster"
    assert "spec.entrypointt: unknown field" in result.stderr


def test_a_kustomization_decides_what_is_applied_and_where(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    """As `raytune-ft k8s render` writes it: raycluster.yaml is beside, not listed."""
    folder = tmp_path / "rendered"
    folder.mkdir()
    write(folder / "rayjob.yaml", rayjob())
    write(folder / "configmap.yaml", CONFIGMAP)
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "spare"}}
    cluster["spec"] = rayjob()["spec"]["rayClusterSpec"]
    write(folder / "raycluster.yaml", cluster)
    kustomization = {"namespace": "team", "resources": ["rayjob.yaml", "configmap.yaml"]}
    (folder / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    result = k8s("apply", str(folder))
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        "created: ConfigMap/code (namespace team)",
        "created: RayJob/tiny-job (namespace team)",
    ]
    assert (kube.names("rayjobs", "team"), kube.names("rayclusters", "team")) == (["tiny-job"], [])
    conflict = k8s("apply", str(folder), "--namespace", "other", "--dry-run")
    assert conflict.exit_code == 2
    assert (
        f"error: {folder / 'configmap.yaml'}#1 ConfigMap/code: the object's namespace is 'team' "
        "but --namespace is 'other'; expected them to agree (pass --namespace team or none)"
    ) in conflict.stderr.splitlines()
    (folder / "kustomization.yaml").write_text(
        yaml.safe_dump({**kustomization, "namePrefix": "x-"})
    )
    unsupported = k8s("apply", str(folder), "--dry-run")
    assert unsupported.exit_code == 2
    assert unsupported.stderr == (
        f"error: {folder / 'kustomization.yaml'}: namePrefix: raytune-ft k8s apply reads only a "
        "kustomization's resources and namespace; expected those alone, or `kubectl apply -k "
        f"{folder}`\n"
    )


# ---- --wait -----------------------------------------------------------------------------------


def test_wait_follows_the_rayjob_to_success(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    kube.script_status(
        "tiny-job",
        [
            {"jobDeploymentStatus": "Initializing"},
            {"jobDeploymentStatus": "Initializing"},  # unchanged: not printed again
            RUNNING,
            {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "message": "done"},
        ],
    )
    result = k8s("apply", str(write(tmp_path / "job.yaml", rayjob(), CONFIGMAP)), "--wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[2:] == [
        "RayJob/tiny-job: jobDeploymentStatus=Initializing",
        "RayJob/tiny-job: jobDeploymentStatus=Running jobStatus=RUNNING",
        'RayJob/tiny-job: jobDeploymentStatus=Complete jobStatus=SUCCEEDED message="done"',
        "succeeded: RayJob/tiny-job (jobStatus SUCCEEDED)",
    ]


def test_wait_reports_a_failed_job_with_its_message(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    failed = {
        "jobDeploymentStatus": "Failed",
        "jobStatus": "FAILED",
        "reason": "AppFailed",
        "message": "Job entrypoint command failed with exit code 1",
    }
    kube.script_status("tiny-job", [RUNNING, failed])
    result = k8s("apply", str(write(tmp_path / "job.yaml", rayjob())), "--wait")
    assert result.exit_code == 1
    assert result.stderr == (
        "failed: RayJob/tiny-job: jobDeploymentStatus=Failed jobStatus=FAILED reason=AppFailed "
        'message="Job entrypoint command failed with exit code 1"; logs: raytune-ft k8s logs '
        "tiny-job --namespace default\n"
    )


def test_wait_gives_up_at_the_timeout_and_says_the_job_runs_on(
    kube: FakeKubeAPI, tmp_path: Path
) -> None:
    kube.script_status("tiny-job", [RUNNING])
    config = kube.kubeconfig(tmp_path / "kubeconfig")
    manifest = write(tmp_path / "job.yaml", rayjob())
    args = ["k8s", "apply", str(manifest), "--wait", "--timeout", "0.3", "--poll-interval", "0.05"]
    started = time.monotonic()
    result = runner.invoke(app, [*args, "--kubeconfig", str(config)])
    assert time.monotonic() - started < 3
    assert result.exit_code == 124
    assert result.stderr == (
        "timeout: RayJob/tiny-job is still Running after 0.3 s; it keeps running in the cluster: "
        "raytune-ft k8s status tiny-job --namespace default\n"
    )
    assert kube.names("rayjobs") == ["tiny-job"]


def test_ctrl_c_while_waiting_detaches(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def ctrl_c(_seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(apply_module, "_sleep", ctrl_c)
    kube.script_status("tiny-job", [RUNNING])
    result = k8s("apply", str(write(tmp_path / "job.yaml", rayjob())), "--wait")
    assert result.exit_code == 130
    assert result.stderr.startswith(
        "detached: RayJob/tiny-job keeps running in namespace default (Ctrl-C stops only the "
        "waiting)"
    )
    assert kube.names("rayjobs") == ["tiny-job"]


def test_wait_without_a_rayjob_is_refused_before_connecting(
    k8s: Callable[..., Any], tmp_path: Path
) -> None:
    manifest = write(tmp_path / "cm.yaml", CONFIGMAP)
    result = k8s("apply", str(manifest), "--wait")
    assert result.exit_code == 2
    assert (
        result.stderr == f"error: --wait follows a RayJob; none among the 1 object in {manifest}\n"
    )


# ---- status, logs, delete ---------------------------------------------------------------------


def test_status_shows_the_rayjob_fields(kube: FakeKubeAPI, k8s: Callable[..., Any]) -> None:
    job = rayjob()
    job["status"] = {**RUNNING, "dashboardURL": "c-1-head-svc.default.svc:8265", "jobId": "j-42"}
    kube.add("rayjobs", job)
    result = k8s("status", "tiny-job")
    assert result.exit_code == 0, result.output
    rows = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in result.stdout.splitlines()
        if line.count("│") == 3
    }
    assert rows["jobDeploymentStatus"] == "Running"
    assert rows["jobStatus"] == "RUNNING"
    assert rows["rayClusterName"] == "c-1"
    assert rows["jobId"] == "j-42"
    assert rows["message"] == "-"
    assert "RayJob default/tiny-job" in result.stdout
    cluster = {"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c-1"}}
    kube.add("rayclusters", {**cluster, "status": {"state": "ready", "readyWorkerReplicas": 2}})
    shown = k8s("status", "c-1")
    assert shown.exit_code == 0, shown.output
    assert "RayCluster default/c-1" in shown.stdout
    assert "│ state                   │ ready" in shown.stdout
    assert "│ readyWorkerReplicas     │ 2" in shown.stdout


def test_status_of_an_unknown_name_names_it_and_the_namespace(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    result = k8s("status", "nope", "--namespace", "team")
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: no RayJob or RayCluster named 'nope' in namespace 'team' (kubeconfig: "
        f"{tmp_path / 'kubeconfig'}, context: fake); expected the name `raytune-ft k8s apply` "
        "printed\n"
    )


def test_logs_print_the_submitter_pod_log(kube: FakeKubeAPI, k8s: Callable[..., Any]) -> None:
    kube.add("rayjobs", {**rayjob(), "status": RUNNING})
    labels = {"batch.kubernetes.io/job-name": "tiny-job", "job-name": "tiny-job"}
    kube.add_pod(
        "tiny-job-old", labels, {"ray-job-submitter": "first try\n"}, created="2026-01-01T00:00:00Z"
    )
    kube.add_pod(
        "tiny-job-new",
        labels,
        {"ray-job-submitter": '{"a": 1}\nsecond try ✓\n'},
        created="2026-01-01T00:05:00Z",
    )
    kube.add_pod("other", {"job-name": "other"}, {"ray-job-submitter": "not this\n"})
    result = k8s("logs", "tiny-job")
    assert result.exit_code == 0, result.output
    assert result.stdout == '{"a": 1}\nsecond try ✓\n'  # the newest pod; JSON-looking text kept


def test_logs_of_a_sidecar_mode_job_come_from_the_head_pod(
    kube: FakeKubeAPI, k8s: Callable[..., Any]
) -> None:
    kube.add("rayjobs", {**rayjob(submissionMode="SidecarMode"), "status": RUNNING})
    head = {"ray.io/cluster": "c-1", "ray.io/node-type": "head"}
    kube.add_pod(
        "c-1-head", head, {"ray-head": "ray start\n", "ray-job-submitter": "job says hi\n"}
    )
    for args in (["logs", "tiny-job"], ["logs", "tiny-job", "--follow"]):
        result = k8s(*args)
        assert (result.exit_code, result.stdout) == (0, "job says hi\n"), result.output
    assert "container=ray-job-submitter&follow=True" in kube.calls("GET")[-1]


def test_logs_before_the_submitter_pod_exists(kube: FakeKubeAPI, k8s: Callable[..., Any]) -> None:
    kube.add("rayjobs", {**rayjob(), "status": {"jobDeploymentStatus": "Initializing"}})
    result = k8s("logs", "tiny-job")
    assert result.exit_code == 1
    assert result.stderr == (
        "RayJob/tiny-job has no submitter pod yet (jobDeploymentStatus=Initializing); KubeRay "
        "starts it once the RayCluster is ready: try again, or add --follow to wait for it\n"
    )
    kube.add_pod("tiny-job-x", {"job-name": "tiny-job"}, {"ray-job-submitter": ""}, phase="Pending")
    pending = k8s("logs", "tiny-job")
    assert pending.exit_code == 1
    assert pending.stderr.startswith(
        'the submitter pod tiny-job-x: container "ray-job-submitter" in pod "tiny-job-x" is '
        "waiting to start: ContainerCreating;"
    )


def test_logs_follow_waits_for_the_pod_until_the_job_ends(
    kube: FakeKubeAPI, k8s: Callable[..., Any]
) -> None:
    kube.add("rayjobs", rayjob())
    ended = {"jobDeploymentStatus": "Failed", "reason": "DeadlineExceeded", "message": "too slow"}
    kube.script_status("tiny-job", [{"jobDeploymentStatus": "Initializing"}, ended])
    result = k8s("logs", "tiny-job", "--follow")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "RayJob/tiny-job has no submitter pod yet (jobDeploymentStatus=Initializing); waiting for "
        "it (Ctrl-C stops waiting)",
        "RayJob/tiny-job has no submitter pod yet (jobDeploymentStatus=Failed), and the job has "
        'ended: jobDeploymentStatus=Failed reason=DeadlineExceeded message="too slow"',
    ]


def test_logs_of_an_http_mode_job_point_at_the_dashboard(
    kube: FakeKubeAPI, k8s: Callable[..., Any]
) -> None:
    kube.add("rayjobs", rayjob(submissionMode="HTTPMode"))
    result = k8s("logs", "tiny-job")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: RayJob/tiny-job uses HTTPMode: KubeRay submits it")


def test_delete_by_name_and_by_path(
    kube: FakeKubeAPI, k8s: Callable[..., Any], tmp_path: Path
) -> None:
    manifest = write(tmp_path / "job.yaml", rayjob(), CONFIGMAP)
    assert k8s("apply", str(manifest)).exit_code == 0
    by_name = k8s("delete", "tiny-job")
    assert (by_name.exit_code, by_name.stdout) == (
        0,
        "deleted: RayJob/tiny-job (namespace default)\n",
    )
    assert kube.names("rayjobs") == []
    delete_call = "DELETE /apis/ray.io/v1/namespaces/default/rayjobs/tiny-job"
    assert kube.body(delete_call)["propagationPolicy"] == "Foreground"
    by_path = k8s("delete", str(manifest))
    assert by_path.exit_code == 0, by_path.output
    assert by_path.stdout.splitlines() == [  # the reverse of the apply order
        "already gone: RayJob/tiny-job (namespace default)",
        "deleted: ConfigMap/code (namespace default)",
    ]
    assert kube.names("configmaps") == []
    missing = k8s("delete", "tiny-job")
    assert missing.exit_code == 2
    assert missing.stderr.startswith(
        "error: no RayJob or RayCluster named 'tiny-job' in namespace 'default' (kubeconfig: "
    )


# ---- the connection ---------------------------------------------------------------------------


def test_an_unreachable_server_is_one_line_in_seconds(tmp_path: Path) -> None:
    port = closed_port()
    config = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{port}")
    manifest = write(tmp_path / "job.yaml", rayjob())
    for args in (["apply", str(manifest)], ["status", "tiny-job"], ["delete", "tiny-job"]):
        started = time.monotonic()
        result = runner.invoke(app, ["k8s", *args, "--kubeconfig", str(config)])
        assert time.monotonic() - started < 5
        assert result.exit_code == 2, result.output
        assert result.stderr == (
            f"error: kubernetes: cannot reach http://127.0.0.1:{port}: connection refused; "
            f"expected a reachable API server (kubeconfig: {config}, context: fake)\n"
        )


def test_a_missing_kubeconfig_or_context(k8s: Callable[..., Any], tmp_path: Path) -> None:
    result = runner.invoke(app, ["k8s", "status", "x", "--kubeconfig", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: kubernetes: kubeconfig {tmp_path / 'nope'} does not exist; expected a kubeconfig "
        "file (--kubeconfig FILE, KUBECONFIG, or ~/.kube/config)\n"
    )
    wrong = k8s("status", "x", "--context", "prod")
    assert wrong.exit_code == 2
    assert wrong.stderr.startswith(
        f"error: kubernetes: kubeconfig {tmp_path / 'kubeconfig'} cannot be used with context "
        "'prod': "
    )
    assert wrong.stderr.rstrip().endswith("contexts in it: fake")
    (tmp_path / "broken").write_text("clusters: [")
    broken = runner.invoke(app, ["k8s", "status", "x", "--kubeconfig", str(tmp_path / "broken")])
    assert broken.exit_code == 2
    assert broken.stderr == (
        f"error: kubernetes: kubeconfig {tmp_path / 'broken'} cannot be used: not valid YAML: "
        "expected the node content, but found '<stream end>' at line 1\n"
    )


def test_refused_credentials_and_forbidden_verbs(tmp_path: Path) -> None:
    manifest = write(tmp_path / "job.yaml", rayjob())
    with FakeKubeAPI(token="s3cret", forbidden={("create", "rayjobs")}) as kube:
        bad = kube.kubeconfig(tmp_path / "bad", token="wrong")
        good = kube.kubeconfig(tmp_path / "good", token="s3cret")
        refused = runner.invoke(app, ["k8s", "apply", str(manifest), "--kubeconfig", str(bad)])
        forbidden = runner.invoke(app, ["k8s", "apply", str(manifest), "--kubeconfig", str(good)])
        assert kube.names("rayjobs") == []
    assert refused.exit_code == forbidden.exit_code == 2
    assert refused.stderr == (
        f"error: kubernetes: {kube.url} refused the credentials (401 Unauthorized); expected "
        f"valid credentials for this cluster (kubeconfig: {bad}, context: fake)\n"
    )
    assert forbidden.stderr == (
        'error: kubernetes: forbidden (403): rayjobs.ray.io is forbidden: User "system:anonymous" '
        'cannot create resource "rayjobs" in API group "ray.io" in the namespace "default"; '
        "expected permission to create rayjobs.ray.io in namespace 'default' "
        f"(kubeconfig: {good}, context: fake)\n"
    )


def test_a_cluster_without_kuberay(tmp_path: Path) -> None:
    manifest = write(tmp_path / "job.yaml", rayjob())
    with FakeKubeAPI(crds_installed=False) as kube:
        config = kube.kubeconfig(tmp_path / "kubeconfig")
        result = runner.invoke(app, ["k8s", "apply", str(manifest), "--kubeconfig", str(config)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: kubernetes: {kube.url} does not serve rayjobs.ray.io (the server could not find "
        "the requested resource); expected KubeRay's CRDs installed in the cluster (helm install "
        f"kuberay-operator kuberay/kuberay-operator) (kubeconfig: {config}, context: fake)\n"
    )
