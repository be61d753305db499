"""Write the JSON schemas that `raytune-ft k8s validate` ships, from the KubeRay CRDs.

    .venv/bin/python tools/extract_crd_schemas.py            # write raytune_ft/k8s/schemas/
    .venv/bin/python tools/extract_crd_schemas.py --check    # exit 1 if the shipped files differ

Input: the CRDs of KubeRay v1.7.0 in ../shared/kuberay/crds (see SOURCE.md there). Output, one
minified file per kind: the `openAPIV3Schema` of the storage version (v1) of RayCluster, RayJob
and RayService, kept as the CRD has it (CEL rules, list-map markers, defaults and all), with two
changes, both made because the API server itself does not use the CRD's schema there:

- `metadata` is `type: object` in a CRD; the API server checks it as ObjectMeta instead, so it is
  replaced by an ObjectMeta schema (below), which lets unknown metadata fields be reported.
- `status` is dropped in favour of "anything": it is a subresource, so the API server ignores
  whatever a manifest puts there. Dropping it also halves the files.

The small schemas of the core kinds that `raytune-ft k8s render` emits (ConfigMap, Secret,
ServiceAccount, PersistentVolumeClaim) and of a kustomization.yaml are written by hand here,
after the Kubernetes v1 API types; they use the same vocabulary as the CRDs (e.g.
`x-kubernetes-int-or-string` for quantities), so one validator reads them all.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CRDS = REPO.parent / "shared" / "kuberay" / "crds"
DEFAULT_OUT = REPO / "raytune_ft" / "k8s" / "schemas"
KUBERAY_VERSION = "v1.7.0"

# kind -> (CRD file, output file). RayCronJob (alpha, off by default) is left out on purpose.
CRDS = {
    "RayCluster": ("ray.io_rayclusters.yaml", "raycluster.v1.json"),
    "RayJob": ("ray.io_rayjobs.yaml", "rayjob.v1.json"),
    "RayService": ("ray.io_rayservices.yaml", "rayservice.v1.json"),
}

# The quantity pattern of the Kubernetes OpenAPI (resource.Quantity), as the CRDs carry it.
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)
STRING: dict[str, Any] = {"type": "string"}
BOOLEAN: dict[str, Any] = {"type": "boolean"}
STRING_MAP: dict[str, Any] = {"type": "object", "additionalProperties": STRING}
QUANTITY: dict[str, Any] = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": QUANTITY_PATTERN,
    "x-kubernetes-int-or-string": True,
}
QUANTITY_MAP: dict[str, Any] = {"type": "object", "additionalProperties": QUANTITY}
# A status the API server ignores (subresource), or a field whose content is free-form.
ANYTHING: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}

# metav1.ObjectMeta. Server-populated fields are accepted (a manifest read back from a cluster
# carries them); `creationTimestamp: null` is what `kubectl create --dry-run -o yaml` writes.
OBJECT_META: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": STRING,
        "generateName": STRING,
        "namespace": STRING,
        "labels": STRING_MAP,
        "annotations": STRING_MAP,
        "finalizers": {"type": "array", "items": STRING, "x-kubernetes-list-type": "set"},
        "ownerReferences": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "apiVersion": STRING,
                    "kind": STRING,
                    "name": STRING,
                    "uid": STRING,
                    "controller": BOOLEAN,
                    "blockOwnerDeletion": BOOLEAN,
                },
                "required": ["apiVersion", "kind", "name", "uid"],
            },
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["uid"],
        },
        "uid": STRING,
        "resourceVersion": STRING,
        "generation": {"type": "integer", "format": "int64"},
        "selfLink": STRING,
        "creationTimestamp": {"type": "string", "format": "date-time", "nullable": True},
        "deletionTimestamp": {"type": "string", "format": "date-time", "nullable": True},
        "deletionGracePeriodSeconds": {"type": "integer", "format": "int64"},
        "managedFields": {"type": "array", "items": ANYTHING},
    },
}


def _top(kind_props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "properties": {"apiVersion": STRING, "kind": STRING, "metadata": OBJECT_META, **kind_props},
    }
    if required:
        schema["required"] = required
    return schema


def _object(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if required:
        schema["required"] = required
    return schema


LABEL_SELECTOR = _object(
    {
        "matchLabels": STRING_MAP,
        "matchExpressions": {
            "type": "array",
            "items": _object(
                {
                    "key": STRING,
                    "operator": {
                        "type": "string",
                        "enum": ["In", "NotIn", "Exists", "DoesNotExist"],
                    },
                    "values": {"type": "array", "items": STRING},
                },
                ["key", "operator"],
            ),
        },
    }
)

# Secret values are base64 (padding required, as Go's StdEncoding decodes them).
BASE64 = {
    "type": "string",
    "pattern": r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$",
}

CORE: dict[str, dict[str, Any]] = {
    "configmap.v1.json": _top(
        {
            "data": STRING_MAP,
            "binaryData": {"type": "object", "additionalProperties": BASE64},
            "immutable": BOOLEAN,
        }
    ),
    "secret.v1.json": _top(
        {
            "data": {"type": "object", "additionalProperties": BASE64},
            "stringData": STRING_MAP,
            "type": STRING,
            "immutable": BOOLEAN,
        }
    ),
    "serviceaccount.v1.json": _top(
        {
            "secrets": {
                "type": "array",
                "items": _object(
                    {
                        "apiVersion": STRING,
                        "kind": STRING,
                        "name": STRING,
                        "namespace": STRING,
                        "uid": STRING,
                        "resourceVersion": STRING,
                        "fieldPath": STRING,
                    }
                ),
            },
            "imagePullSecrets": {"type": "array", "items": _object({"name": STRING})},
            "automountServiceAccountToken": BOOLEAN,
        }
    ),
    "persistentvolumeclaim.v1.json": _top(
        {
            "spec": _object(
                {
                    # The API server needs at least one mode and a storage request (core/v1
                    # validation, ValidatePersistentVolumeClaimSpec).
                    "accessModes": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "string",
                            "enum": [
                                "ReadWriteOnce",
                                "ReadOnlyMany",
                                "ReadWriteMany",
                                "ReadWriteOncePod",
                            ],
                        },
                        "x-kubernetes-list-type": "set",
                    },
                    "resources": _object(
                        {
                            "requests": {**QUANTITY_MAP, "required": ["storage"]},
                            "limits": QUANTITY_MAP,
                        },
                        ["requests"],
                    ),
                    "storageClassName": {"type": "string", "nullable": True},
                    "volumeMode": {"type": "string", "enum": ["Filesystem", "Block"]},
                    "volumeName": STRING,
                    "volumeAttributesClassName": {"type": "string", "nullable": True},
                    "selector": LABEL_SELECTOR,
                    "dataSource": _object(
                        {"apiGroup": STRING, "kind": STRING, "name": STRING}, ["kind", "name"]
                    ),
                    "dataSourceRef": _object(
                        {"apiGroup": STRING, "kind": STRING, "name": STRING, "namespace": STRING},
                        ["kind", "name"],
                    ),
                },
                ["accessModes", "resources"],
            ),
            "status": ANYTHING,
        },
        ["spec"],
    ),
}

# kustomize.config.k8s.io/v1beta1 Kustomization: the top-level fields kustomize v5 knows, so a
# typo there is caught; what is inside them is kustomize's business (checked loosely).
_ANY_LIST = {"type": "array"}
_PATH_LIST = {"type": "array", "items": STRING}
_GENERATOR_LIST = {
    "type": "array",
    "items": {
        "type": "object",
        "properties": {
            "name": STRING,
            "namespace": STRING,
            "behavior": {"type": "string", "enum": ["create", "replace", "merge"]},
            "files": _PATH_LIST,
            "literals": _PATH_LIST,
            "envs": _PATH_LIST,
            "env": STRING,
            "type": STRING,
            "options": ANYTHING,
        },
    },
}
KUSTOMIZATION = {
    "type": "object",
    "properties": {
        "apiVersion": STRING,
        "kind": STRING,
        "metadata": OBJECT_META,
        "resources": _PATH_LIST,
        "components": _PATH_LIST,
        "bases": _PATH_LIST,
        "crds": _PATH_LIST,
        "namespace": STRING,
        "namePrefix": STRING,
        "nameSuffix": STRING,
        "commonLabels": STRING_MAP,
        "commonAnnotations": STRING_MAP,
        "labels": _ANY_LIST,
        "images": _ANY_LIST,
        "replicas": _ANY_LIST,
        "patches": _ANY_LIST,
        "patchesStrategicMerge": _ANY_LIST,
        "patchesJson6902": _ANY_LIST,
        "replacements": _ANY_LIST,
        "vars": _ANY_LIST,
        "configMapGenerator": _GENERATOR_LIST,
        "secretGenerator": _GENERATOR_LIST,
        "generatorOptions": ANYTHING,
        "helmCharts": _ANY_LIST,
        "helmGlobals": ANYTHING,
        "openapi": ANYTHING,
        "sortOptions": ANYTHING,
        "buildMetadata": _PATH_LIST,
        "configurations": _PATH_LIST,
        "generators": _PATH_LIST,
        "transformers": _PATH_LIST,
        "validators": _PATH_LIST,
    },
}


def crd_schema(crd: dict[str, Any], source: str) -> dict[str, Any]:
    """The v1 storage schema of one CRD, with metadata and status as the API server treats them."""
    versions = [v for v in crd["spec"]["versions"] if v.get("storage") and v.get("served")]
    if len(versions) != 1 or versions[0]["name"] != "v1":
        raise SystemExit(f"{source}: expected v1 to be the one served storage version")
    schema = versions[0]["schema"]["openAPIV3Schema"]
    props = dict(schema["properties"])
    props["metadata"] = OBJECT_META
    if "status" in props:
        props["status"] = ANYTHING
    kind, group = crd["spec"]["names"]["kind"], crd["spec"]["group"]
    return {
        "$comment": f"{kind} {group}/v1 from KubeRay {KUBERAY_VERSION} {source}",
        **schema,
        "properties": props,
    }


def build_schemas(crd_dir: Path) -> dict[str, str]:
    """File name -> file content, for every schema the package ships."""
    out: dict[str, str] = {}
    for _kind, (crd_file, out_name) in CRDS.items():
        with open(crd_dir / crd_file, encoding="utf-8") as f:
            crd = yaml.load(f, Loader=yaml.CSafeLoader)
        out[out_name] = _dump(crd_schema(crd, crd_file))
    for out_name, schema in CORE.items():
        out[out_name] = _dump(schema)
    out["kustomization.v1beta1.json"] = _dump(KUSTOMIZATION)
    return dict(sorted(out.items()))


def _dump(schema: dict[str, Any]) -> str:
    return json.dumps(schema, separators=(",", ":"), sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crds", type=Path, default=DEFAULT_CRDS, help="folder of the CRD YAMLs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder to write into")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on a difference")
    args = parser.parse_args(argv)
    schemas = build_schemas(args.crds)
    stale = sorted(
        name
        for name, text in schemas.items()
        if not (args.out / name).is_file() or (args.out / name).read_text("utf-8") != text
    )
    if args.check:
        for name in stale:
            print(f"out of date: {args.out / name}", file=sys.stderr)
        return 1 if stale else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in schemas.items():
        (args.out / name).write_text(text, encoding="utf-8")
        print(f"{args.out / name}: {len(text.encode()) // 1024} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
