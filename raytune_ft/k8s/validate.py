"""Strict offline validation of KubeRay manifests, as the API server and KubeRay would judge them.

The schemas in `schemas/` are the CRDs of KubeRay v1.7.0 (see tools/extract_crd_schemas.py) plus
small hand-written ones for the core kinds `raytune-ft k8s render` emits. A document goes through
what the API server does to a custom resource, in its order:

1. nulls in non-nullable fields are dropped and the CRD's defaults filled in (so `required`
   fields that have a default, like workerGroupSpecs[].minReplicas, are never "missing");
2. the structural schema, strictly: unknown fields are errors (kubectl's default field
   validation is Strict), int32/int64 ranges, int-or-string, quantity patterns, enums, list-map
   and set uniqueness, and the CRD's CEL rules (`x-kubernetes-validations`);
3. what KubeRay's admission webhook and controller reject (ray-operator/controllers/ray/utils/
   validation.go, pkg/webhooks/v1): name limits, worker group names, replica bounds, RayJob modes.

Every problem is one line: `<file>#<doc> <Kind>/<name>: <field path>: <what is wrong; expected>`.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from difflib import get_close_matches
from functools import cache
from pathlib import Path
from typing import Any

import yaml

SCHEMA_DIR = Path(__file__).with_name("schemas")

INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|"
    r"([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)

# KubeRay's limits (ray-operator/controllers/ray/utils/constant.go): 63 - len("-serve-svc") = 53
# for a RayCluster; a RayJob or RayService names its RayCluster "<name>-<5 random>", hence 47.
RAYCLUSTER_NAME_MAX = 53
RAYJOB_NAME_MAX = RAYSERVICE_NAME_MAX = RAYCLUSTER_NAME_MAX - 6
# The API server truncates a generateName prefix to 58 characters and appends 5 random ones.
GENERATED_SUFFIX = 5
GENERATE_NAME_PREFIX_MAX = 63 - GENERATED_SUFFIX

DNS1035 = "DNS-1035 label"
DNS1123_LABEL = "DNS-1123 label"
DNS1123_SUBDOMAIN = "DNS-1123 subdomain"
_NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    DNS1035: (
        re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?"),
        "lowercase letters, digits and '-', starting with a letter and ending with a letter "
        "or digit",
    ),
    DNS1123_LABEL: (
        re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"),
        "lowercase letters, digits and '-', starting and ending with a letter or digit",
    ),
    DNS1123_SUBDOMAIN: (
        re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"),
        "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
    ),
}


@dataclass(frozen=True)
class Kind:
    """A kind this validator knows: its schema and the name rule the API server or KubeRay has."""

    kind: str
    api_version: str
    schema_file: str
    name_rule: str | None  # None: no name needed (a kustomization)
    name_max: int


_KIND_LIST = [
    Kind("RayCluster", "ray.io/v1", "raycluster.v1.json", DNS1035, RAYCLUSTER_NAME_MAX),
    Kind("RayJob", "ray.io/v1", "rayjob.v1.json", DNS1035, RAYJOB_NAME_MAX),
    Kind("RayService", "ray.io/v1", "rayservice.v1.json", DNS1035, RAYSERVICE_NAME_MAX),
    Kind("ConfigMap", "v1", "configmap.v1.json", DNS1123_SUBDOMAIN, 253),
    Kind("Secret", "v1", "secret.v1.json", DNS1123_SUBDOMAIN, 253),
    Kind("ServiceAccount", "v1", "serviceaccount.v1.json", DNS1123_SUBDOMAIN, 253),
    Kind("PersistentVolumeClaim", "v1", "persistentvolumeclaim.v1.json", DNS1123_SUBDOMAIN, 253),
    Kind("Kustomization", "kustomize.config.k8s.io/v1beta1", "kustomization.v1beta1.json", None, 0),
]
KINDS: dict[str, Kind] = {k.kind: k for k in _KIND_LIST}
KUSTOMIZATION_FILES = ("kustomization.yaml", "kustomization.yml", "Kustomization")
# Why some kinds one might expect are missing, said instead of the bare "unknown kind".
_NOT_CHECKED = {
    "RayCronJob": "RayCronJob is alpha in KubeRay v1.7.0 (feature gate off by default) and is "
    "not checked",
}

# (path from the document root, message)
Problem = tuple[tuple[str | int, ...], str]


# --------------------------------------------------------------------------------------------
# Schemas: loaded once, lazily; Kubernetes' structural-schema dialect turned into JSON Schema.
# --------------------------------------------------------------------------------------------


@cache
def _schema(file_name: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / file_name, encoding="utf-8") as f:
        return _to_json_schema(json.load(f))


def _to_json_schema(node: dict[str, Any]) -> dict[str, Any]:
    """Kubernetes' OpenAPI v3 dialect -> what the jsonschema validator below enforces.

    - fields not in `properties` are unknown (the API server prunes them, kubectl's strict field
      validation rejects them), unless the schema says additionalProperties or
      x-kubernetes-preserve-unknown-fields;
    - `nullable: true` admits null;
    - `x-kubernetes-int-or-string` replaces its `anyOf: [integer, string]` (one clear message
      from our own keyword instead of anyOf's "not valid under any of the given schemas").
    """
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "properties":
            out[key] = {name: _to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _to_json_schema(value)
        elif key in ("anyOf", "allOf", "oneOf"):
            out[key] = [_to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        out.pop("anyOf", None)
        out.pop("type", None)
    if node.get("nullable"):
        if "type" in out:
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


@cache
def _validator(file_name: str) -> Any:
    return _validator_class()(_schema(file_name))


@cache
def _validator_class() -> Any:
    from jsonschema import Draft7Validator, validators

    # OpenAPI's integer is JSON's: 3.0 is a number, not an integer (Draft 7 would accept it),
    # and the API server's int fields refuse it.
    type_checker = Draft7Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, v: isinstance(v, int) and not isinstance(v, bool)
    )
    return validators.extend(
        Draft7Validator,
        type_checker=type_checker,
        validators={
            "type": _kw_type,
            "enum": _kw_enum,
            "required": _kw_required,
            "additionalProperties": _kw_additional_properties,
            "pattern": _kw_pattern,
            "format": _kw_format,
            "minimum": _kw_bound("minimum"),
            "maximum": _kw_bound("maximum"),
            "minLength": _kw_bound("minLength"),
            "maxLength": _kw_bound("maxLength"),
            "minItems": _kw_bound("minItems"),
            "maxItems": _kw_bound("maxItems"),
            "x-kubernetes-int-or-string": _kw_int_or_string,
            "x-kubernetes-list-type": _kw_list_type,
            "x-kubernetes-validations": _kw_cel,
        },
    )


# --------------------------------------------------------------------------------------------
# Keywords. Each yields one error per problem with a message that says what was expected.
# --------------------------------------------------------------------------------------------


def _error(message: str, path: Iterable[str | int] = ()) -> Any:
    from jsonschema import ValidationError

    return ValidationError(message, path=list(path))


_TYPE_WORDS = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "object": "a mapping",
    "array": "a list",
    "null": "null",
}


def _expected_type(types: str | list[str]) -> str:
    names = [types] if isinstance(types, str) else list(types)
    return " or ".join(_TYPE_WORDS.get(t, t) for t in names)


def _show(value: Any) -> str:
    """A value as the user wrote it, with what YAML made of it when that is the point."""
    if isinstance(value, bool):
        return f"{str(value).lower()} (a boolean)"
    if value is None:
        return "null"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        return (text[:60] + '…"') if len(text) > 62 else text
    if isinstance(value, int):
        return f"{value} (an integer)"
    if isinstance(value, float):
        return f"{value:g} (a number)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _describe(schema: dict[str, Any]) -> str:
    if schema.get("pattern") == QUANTITY_PATTERN:
        return 'a quantity such as "500m", "2Gi" or "1"'
    if schema.get("x-kubernetes-int-or-string"):
        return "an integer or a string"
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    if "type" in schema:
        return _expected_type(schema["type"])
    return "a value"


def _kw_type(validator: Any, types: Any, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    names = [types] if isinstance(types, str) else types
    if not any(validator.is_type(instance, t) for t in names):
        # YAML turns 1, 1.10, true, yes and on into numbers and booleans unless quoted.
        quote = "string" in names and isinstance(instance, (bool, int, float))
        hint = "; quote it to keep it text" if quote else ""
        yield _error(f"expected {_expected_type(names)}, got {_show(instance)}{hint}")


def _kw_enum(
    validator: Any, enum: list[Any], instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not any(instance == v and type(instance) is type(v) for v in enum):
        allowed = ", ".join(json.dumps(v) for v in enum)
        yield _error(f"expected one of {allowed}, got {_show(instance)}")


def _kw_required(
    validator: Any, required: list[str], instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    props = schema.get("properties", {})
    extra = schema.get("additionalProperties")
    for name in required:
        if name not in instance:
            want = _describe(props.get(name, extra if isinstance(extra, dict) else {}))
            yield _error(f"required field is missing; expected {want}", [name])


def _kw_additional_properties(
    validator: Any, extra: Any, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not isinstance(instance, dict):
        return
    known = schema.get("properties", {})
    for key, value in instance.items():
        if key in known:
            continue
        if extra is False:
            yield _error(_unknown_field(str(key), sorted(known)), [key])
        elif isinstance(extra, dict):
            yield from validator.descend(value, extra, path=key)


def _unknown_field(key: str, known: list[str]) -> str:
    close = get_close_matches(key, known, n=1, cutoff=0.75)
    if close:
        return f'unknown field {json.dumps(key)}; did you mean "{close[0]}"?'
    return f"unknown field {json.dumps(key)}; expected one of: {', '.join(known)}"


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    # Go's RE2 `$` is the end of the text; Python's also matches before a final newline.
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _kw_pattern(
    validator: Any, pattern: str, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not isinstance(instance, str) or _regex(pattern).search(instance):
        return
    if pattern == QUANTITY_PATTERN:
        yield _error(f'expected a quantity such as "500m", "2Gi" or "1", got {_show(instance)}')
    else:
        yield _error(f"expected a string matching {pattern}, got {_show(instance)}")


_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)


def _kw_format(validator: Any, fmt: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    bounds = {"int32": INT32, "int64": INT64}.get(fmt)
    if bounds and isinstance(instance, int) and not isinstance(instance, bool):
        low, high = bounds
        if not low <= instance <= high:
            yield _error(f"expected an {fmt} (from {low} to {high}), got {instance}")
    elif fmt == "date-time" and isinstance(instance, str) and not _DATE_TIME.fullmatch(instance):
        yield _error(
            f'expected an RFC 3339 time such as "2026-01-31T12:00:00Z", got {_show(instance)}'
        )


def _kw_bound(keyword: str) -> Any:
    """minimum, maximum, minLength, ...: one function per keyword, with a message in words."""
    want, measure, kinds, too_small = {
        "minimum": ("a value >= {}", None, (int, float), True),
        "maximum": ("a value <= {}", None, (int, float), False),
        "minLength": ("at least {} characters", len, str, True),
        "maxLength": ("at most {} characters", len, str, False),
        "minItems": ("at least {} items", len, list, True),
        "maxItems": ("at most {} items", len, list, False),
    }[keyword]

    def check(validator: Any, limit: int, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
        if not isinstance(instance, kinds) or isinstance(instance, bool):
            return
        got = measure(instance) if measure else instance
        if (got < limit) if too_small else (got > limit):
            shown = _show(instance) if measure is None else str(got)
            yield _error(f"expected {want.format(limit)}, got {shown}")

    return check


def _kw_int_or_string(
    validator: Any, flag: bool, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not flag or isinstance(instance, str):
        return
    if isinstance(instance, int) and not isinstance(instance, bool):
        return
    if schema.get("pattern") == QUANTITY_PATTERN:
        hint = f'; quote it: "{instance:g}"' if isinstance(instance, float) else ""
        yield _error(
            f'expected an integer or a quantity string such as "500m", got {_show(instance)}{hint}'
        )
    else:
        yield _error(f"expected an integer or a string, got {_show(instance)}")


def _kw_list_type(
    validator: Any, list_type: str, instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    if not isinstance(instance, list) or list_type not in ("set", "map"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", []) if list_type == "map" else []
    first: dict[str, int] = {}
    for index, item in enumerate(instance):
        if list_type == "map":
            if not isinstance(item, dict):
                continue  # the items schema reports the type
            identity = json.dumps([item.get(k) for k in keys], default=str)
        else:
            identity = json.dumps(item, sort_keys=True, default=str)
        if identity not in first:
            first[identity] = index
            continue
        if list_type == "map":
            what = ", ".join(f"{k}={json.dumps(item.get(k), default=str)}" for k in keys)
            unique = " + ".join(keys)
            yield _error(
                f"duplicate entry with {what} (same as [{first[identity]}]); "
                f"expected each entry to have a unique {unique}",
                [index],
            )
        else:
            yield _error(
                f"duplicate value {_show(item)} (same as [{first[identity]}]); "
                "expected each value once",
                [index],
            )


# CEL rules of the KubeRay v1.7.0 CRDs (RayCluster, RayJob, RayService, v1), all handled here:
#   "self in ['ray.io/kuberay-operator', 'kueue.x-k8s.io/multikueue']"    (spec.managedBy)
#       evaluated.
#   "!(has(self.jobStatus) && has(self.jobDeploymentStatus))" and
#   "has(self.jobStatus) || has(self.jobDeploymentStatus)"    (deletionRules[].condition)
#       evaluated; cel-python's has() works on the mapping a YAML object becomes.
#   "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))" and
#   "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))"
#       (spec.deletionStrategy) evaluated.
#   "self == oldSelf"    (managedBy, gcsFaultToleranceOptions.backend)
#       NOT evaluated: a transition rule, checked only on update against the stored object;
#       a manifest on its own has no oldSelf. Any rule naming oldSelf is skipped the same way.
# tests/unit/test_k8s_validate.py compiles every rule of the shipped schemas so a new one
# cel-python cannot handle is caught when the schemas are regenerated.
_TRANSITION = re.compile(r"\boldSelf\b")


def is_transition_rule(rule: str) -> bool:
    """True for a CEL rule that compares with the stored object, which offline checks lack."""
    return bool(_TRANSITION.search(rule))


@cache
def _cel_environment() -> Any:
    import celpy

    return celpy.Environment()  # builds cel-python's parser (~0.2 s): once, and only if needed


@cache
def _cel_program(rule: str) -> Any:
    env = _cel_environment()
    return env.program(env.compile(rule))


def evaluate_cel(rule: str, value: Any) -> bool:
    """Evaluate one CEL rule with `self` bound to `value`; raises on a rule that cannot run."""
    import celpy

    result = _cel_program(rule).evaluate({"self": celpy.json_to_cel(value)})
    if isinstance(result, Exception):
        raise result
    return bool(result)


def _kw_cel(
    validator: Any, rules: list[Any], instance: Any, schema: dict[str, Any]
) -> Iterator[Any]:
    types = schema.get("type")
    if types and not any(
        validator.is_type(instance, t) for t in ([types] if isinstance(types, str) else types)
    ):
        return  # the type error is reported; the rule would only fail to evaluate
    for entry in rules:
        rule = entry.get("rule", "")
        if is_transition_rule(rule):
            continue
        try:
            ok = evaluate_cel(rule, instance)
        except Exception as exc:  # a rule cel-python cannot run: say so, do not pass silently
            reason = " ".join(str(exc).split())[:160]
            yield _error(f"could not evaluate the CRD's CEL rule {rule!r}: {reason}")
            continue
        if not ok:
            message = entry.get("message") or f"failed the CRD's rule {rule}"
            yield _error(f"{message} (CEL rule: {rule})")


# --------------------------------------------------------------------------------------------
# Defaulting, as the API server does before it validates a custom resource.
# --------------------------------------------------------------------------------------------


def _apply_defaults(node: Any, schema: dict[str, Any]) -> None:
    if isinstance(node, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        extra = extra if isinstance(extra, dict) else None
        if not props and extra is None:
            return
        for key in list(node):
            sub = props.get(key, extra)
            # A null in a non-nullable field is pruned, then defaulted, never an error.
            if node[key] is None and sub is not None and not sub.get("nullable"):
                del node[key]
        for key, sub in props.items():
            if key not in node and "default" in sub:
                node[key] = copy.deepcopy(sub["default"])
        for key, value in node.items():
            sub = props.get(key, extra)
            if sub is not None:
                _apply_defaults(value, sub)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        for item in node:
            _apply_defaults(item, schema["items"])


# --------------------------------------------------------------------------------------------
# Checks beyond the schema: names (API server), KubeRay's webhook and controller validation.
# --------------------------------------------------------------------------------------------


def _name_problems(rule: str, value: str, what: str, max_len: int) -> Iterator[str]:
    regex, words = _NAME_RULES[rule]
    if len(value) > max_len:
        yield f"{len(value)} characters is too long; expected at most {max_len} for a {what}"
    if not regex.fullmatch(value):
        yield f"{json.dumps(value)} is not a valid {what}; expected a {rule}: {words}"


_QUALIFIED = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")


def _qualified_name_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or not _NAME_RULES[DNS1123_SUBDOMAIN][0].fullmatch(prefix)):
        return "expected a DNS-1123 subdomain prefix such as example.com/ before the name"
    if slash and len(prefix) > 253:
        return "expected a prefix of at most 253 characters"
    if not name or len(name) > 63 or not _QUALIFIED.fullmatch(name):
        return (
            "expected [prefix/]name, the name at most 63 characters of letters, digits, "
            "'-', '_' or '.', starting and ending with a letter or digit"
        )
    return None


def _label_problems(labels: Any, at: tuple[str | int, ...]) -> Iterator[Problem]:
    if not isinstance(labels, dict):
        return
    for key, value in labels.items():
        key_problem = _qualified_name_problem(str(key))
        if key_problem:
            yield (*at, key), f"invalid label key; {key_problem}"
        if isinstance(value, str) and (
            len(value) > 63 or (value and not _QUALIFIED.fullmatch(value))
        ):
            yield (
                (*at, key),
                (
                    f"invalid label value {_show(value)}; expected at most 63 characters of "
                    "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
                ),
            )


def _metadata_problems(doc: dict[str, Any], kind: Kind) -> Iterator[Problem]:
    meta = doc.get("metadata")
    if kind.name_rule is None:
        return
    if meta is None:
        yield ("metadata",), "required field is missing; expected a mapping with a name"
        return
    if not isinstance(meta, dict):
        return  # the schema reports the type
    name, generate = meta.get("name"), meta.get("generateName")
    what = f"{kind.kind} name"
    if isinstance(name, str) and name:
        for message in _name_problems(kind.name_rule, name, what, kind.name_max):
            yield ("metadata", "name"), message
    elif isinstance(generate, str) and generate:
        # The API server appends 5 random lowercase letters/digits to the (truncated) prefix.
        prefix = generate[:GENERATE_NAME_PREFIX_MAX]
        sample = prefix + "x" * GENERATED_SUFFIX
        if len(sample) > kind.name_max:
            yield (
                ("metadata", "generateName"),
                (
                    f"{len(generate)} characters is too long; expected at most "
                    f"{kind.name_max - GENERATED_SUFFIX} for a {kind.kind} (the API server appends "
                    f"{GENERATED_SUFFIX} characters and the name must fit {kind.name_max})"
                ),
            )
        if not _NAME_RULES[kind.name_rule][0].fullmatch(sample):
            words = _NAME_RULES[kind.name_rule][1]
            yield (
                ("metadata", "generateName"),
                (
                    f"{json.dumps(generate)} is not a valid prefix for a {what}; expected a "
                    f"{kind.name_rule} prefix: {words}"
                ),
            )
    elif "name" not in meta or name == "":
        yield ("metadata", "name"), "required field is missing; expected a name or a generateName"
    namespace = meta.get("namespace")
    if isinstance(namespace, str):
        for message in _name_problems(DNS1123_LABEL, namespace, "namespace", 63):
            yield ("metadata", "namespace"), message
    yield from _label_problems(meta.get("labels"), ("metadata", "labels"))
    annotations = meta.get("annotations")
    if isinstance(annotations, dict):
        size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
        if size > ANNOTATIONS_SIZE_MAX:
            yield (
                ("metadata", "annotations"),
                f"{size} bytes in all; expected at most {ANNOTATIONS_SIZE_MAX} (256 KiB)",
            )
        for key in annotations:
            key_problem = _qualified_name_problem(str(key))
            if key_problem:
                yield ("metadata", "annotations", key), f"invalid annotation key; {key_problem}"


_CONFIG_KEY = re.compile(r"[-._a-zA-Z0-9]+")
DATA_SIZE_MAX = 1 << 20  # core/v1: a ConfigMap's or Secret's data, 1 MiB
ANNOTATIONS_SIZE_MAX = 256 << 10  # metav1: all annotations of an object together, 256 KiB


def _data_key_problems(doc: dict[str, Any], sections: tuple[str, ...]) -> Iterator[Problem]:
    """ConfigMap and Secret keys: file names in a mounted volume (core/v1 IsConfigMapKey)."""
    seen: dict[str, str] = {}
    for section in sections:
        data = doc.get(section)
        if not isinstance(data, dict):
            continue
        for key in data:
            key = str(key)
            if len(key) > 253 or not _CONFIG_KEY.fullmatch(key) or key in (".", ".."):
                yield (
                    (section, key),
                    (
                        "invalid key; expected at most 253 characters of letters, digits, '-', '_' "
                        "or '.' (and not '.' or '..')"
                    ),
                )
            if doc.get("kind") == "ConfigMap" and key in seen and seen[key] != section:
                yield (section, key), f"key also in {seen[key]}; expected each key in one place"
            seen.setdefault(key, section)
    size = 0
    for section in sections:
        data = doc.get(section)
        # Base64 (a Secret's data, binaryData) spends 4 characters on 3 bytes.
        encoded = section == "binaryData" or (section == "data" and doc.get("kind") == "Secret")
        for value in data.values() if isinstance(data, dict) else []:
            length = len(str(value).encode())
            size += length * 3 // 4 if encoded else length
    if size > DATA_SIZE_MAX:
        yield (
            (sections[0],),
            (
                f"about {size / 2**20:.1f} MiB of data; expected at most 1 MiB (the API server's "
                "limit for a ConfigMap or Secret)"
            ),
        )


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _env_value(container: Any, name: str) -> Any:
    env = container.get("env") if isinstance(container, dict) else None
    for entry in env if isinstance(env, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get("value", "")
    return None


def _pod_spec(group: Any) -> dict[str, Any]:
    template = group.get("template") if isinstance(group, dict) else None
    spec = template.get("spec") if isinstance(template, dict) else None
    return spec if isinstance(spec, dict) else {}


_RAY_START_RESOURCES = ("num-cpus", "num-gpus", "memory", "resources")
# Enums of the core/v1 Pod that the CRD leaves as plain strings: the RayCluster is accepted, then
# the API server refuses every Pod KubeRay creates from it.
_POD_ENUMS = {"restartPolicy": ("Always", "OnFailure", "Never")}
_CONTAINER_ENUMS = {"imagePullPolicy": ("Always", "Never", "IfNotPresent")}
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP")


_QUANTITY_SUFFIX = {
    **{s: Decimal(1024) ** (i + 1) for i, s in enumerate(("Ki", "Mi", "Gi", "Ti", "Pi", "Ei"))},
    **{
        s: Decimal(10) ** e
        for s, e in zip("numkMGTPE", (-9, -6, -3, 3, 6, 9, 12, 15, 18), strict=True)
    },
    "": Decimal(1),
}


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes quantity ("500m", "2Gi", 1) as a number; None if it is not one."""
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if not isinstance(value, str) or not _regex(QUANTITY_PATTERN).search(value):
        return None
    number = re.match(r"[+-]?(\d+\.?\d*|\.\d+)", value)
    assert number  # the pattern guarantees it
    rest = value[number.end() :]
    try:
        if rest in _QUANTITY_SUFFIX:
            return Decimal(number.group()) * _QUANTITY_SUFFIX[rest]
        return Decimal(number.group()) * Decimal(10) ** Decimal(rest[1:])  # 1e3, 5E-1
    except ArithmeticError:  # an exponent past what Decimal holds: no comparison then
        return None


def _resource_problems(resources: Any, at: tuple[str | int, ...]) -> Iterator[Problem]:
    """core/v1 container resources: what the API server refuses in the Pods KubeRay creates."""
    if not isinstance(resources, dict):
        return
    limits, requests = resources.get("limits"), resources.get("requests")
    limits = limits if isinstance(limits, dict) else {}
    requests = requests if isinstance(requests, dict) else {}
    for section, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            amount = quantity(raw)
            if amount is None:
                continue  # the schema reports it
            if amount < 0:
                yield (*at, section, name), f"{raw} is negative; expected 0 or more"
            # Extended resources (nvidia.com/gpu, ...) come in whole units.
            elif "/" in str(name) and "kubernetes.io/" not in str(name) and amount % 1:
                yield (
                    (*at, section, name),
                    (
                        f"{raw} is not a whole number; expected whole {name} units "
                        "(the API server would refuse the Pods)"
                    ),
                )
    for name, raw in requests.items():
        request, limit = quantity(raw), quantity(limits.get(name))
        if request is None or limit is None:
            continue
        if "/" in str(name) and "kubernetes.io/" not in str(name) and request != limit:
            yield (
                (*at, "requests", name),
                (
                    f"{raw} differs from the limit {limits[name]}; expected requests equal to "
                    "limits for an extended resource (the API server would refuse the Pods)"
                ),
            )
        elif request > limit:
            yield (
                (*at, "requests", name),
                (
                    f"{raw} is more than the limit {limits[name]}; expected at most the limit "
                    "(the API server would refuse the Pods)"
                ),
            )


def _one_of(value: Any, allowed: tuple[str, ...]) -> str:
    names = ", ".join(json.dumps(a) for a in allowed)
    return f"expected one of {names}, got {_show(value)} (the API server would refuse the Pods)"


def _pod_problems(pod: dict[str, Any], at: tuple[str | int, ...]) -> Iterator[Problem]:
    for key, allowed in _POD_ENUMS.items():
        if key in pod and pod[key] not in allowed and isinstance(pod[key], str):
            yield (*at, key), _one_of(pod[key], allowed)
    names: dict[str, str] = {}
    for section in ("initContainers", "containers"):
        items = pod.get(section)
        for index, container in enumerate(items if isinstance(items, list) else []):
            if not isinstance(container, dict):
                continue
            c_at = (*at, section, index)
            for key, allowed in _CONTAINER_ENUMS.items():
                value = container.get(key)
                if isinstance(value, str) and value not in allowed:
                    yield (*c_at, key), _one_of(value, allowed)
            yield from _resource_problems(container.get("resources"), (*c_at, "resources"))
            ports = container.get("ports")
            for p_index, port in enumerate(ports if isinstance(ports, list) else []):
                protocol = port.get("protocol") if isinstance(port, dict) else None
                if isinstance(protocol, str) and protocol not in _PORT_PROTOCOLS:
                    yield (*c_at, "ports", p_index, "protocol"), _one_of(protocol, _PORT_PROTOCOLS)
            # The API server wants container names unique across init and regular containers;
            # the CRD's list-map only covers each list on its own.
            cname = container.get("name")
            if not isinstance(cname, str):
                continue
            if cname in names and not names[cname].startswith(section + "["):
                yield (
                    (*c_at, "name"),
                    (
                        f"container name {json.dumps(cname)} is also used by {names[cname]}; "
                        "expected container names unique across initContainers and containers"
                    ),
                )
            names.setdefault(cname, f"{section}[{index}]")


def _group_problems(
    group: dict[str, Any], at: tuple[str | int, ...], name: str
) -> Iterator[Problem]:
    pod = _pod_spec(group)
    pod_at = (*at, "template", "spec")
    containers = pod.get("containers")
    if isinstance(containers, list) and not containers:
        yield (
            (*pod_at, "containers"),
            "empty list; expected at least one container (KubeRay runs Ray in the first)",
        )
    yield from _pod_problems(pod, pod_at)
    params = group.get("rayStartParams")
    if isinstance(params, dict):
        if "labels" in params:
            yield (
                (*at, "rayStartParams", "labels"),
                f"not supported for the {name} group; expected the group's labels field instead",
            )
        clash = [p for p in _RAY_START_RESOURCES if params.get(p)]
        if clash and isinstance(group.get("resources"), dict) and group["resources"]:
            yield (
                (*at, "resources"),
                (
                    f"set together with rayStartParams {', '.join(clash)} for the {name} group; "
                    "expected resources in only one of the two"
                ),
            )
    yield from _label_problems(group.get("labels"), (*at, "labels"))


def _cluster_spec_problems(spec: Any, at: tuple[str | int, ...]) -> Iterator[Problem]:
    """KubeRay's ValidateRayClusterSpec and RayCluster webhook, the checks that matter most."""
    if not isinstance(spec, dict):
        return
    head = spec.get("headGroupSpec")
    if isinstance(head, dict):
        yield from _group_problems(head, (*at, "headGroupSpec"), "head")
    groups = spec.get("workerGroupSpecs")
    groups = groups if isinstance(groups, list) else []
    seen: dict[str, int] = {}
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            continue
        g_at = (*at, "workerGroupSpecs", index)
        gname = group.get("groupName")
        if isinstance(gname, str):
            if gname in seen:
                yield (
                    (*g_at, "groupName"),
                    (
                        f"duplicate worker group name {json.dumps(gname)} (same as "
                        f"workerGroupSpecs[{seen[gname]}]); expected unique group names"
                    ),
                )
            seen.setdefault(gname, index)
        yield from _group_problems(group, g_at, f"worker group {gname}")
        # Unset values are the CRD defaults (0 and 2147483647), as the API server fills them.
        low, high = _int(group.get("minReplicas", 0)), _int(group.get("maxReplicas", INT32[1]))
        replicas = _int(group.get("replicas"))
        for key, value in (("minReplicas", low), ("maxReplicas", high)):
            if value is not None and value < 0:
                yield (*g_at, key), f"{value} is negative; expected 0 or more"
        if low is None or high is None or low < 0 or high < 0:
            continue
        if low > high:
            yield (
                (*g_at, "minReplicas"),
                (
                    f"minReplicas {low} is greater than maxReplicas {high}; "
                    "expected minReplicas <= maxReplicas"
                ),
            )
        elif replicas is not None and not low <= replicas <= high:
            clamp = low if replicas < low else high
            yield (
                (*g_at, "replicas"),
                (
                    f"replicas {replicas} is outside minReplicas..maxReplicas ({low}..{high}); "
                    f"expected minReplicas <= replicas <= maxReplicas (KubeRay would use {clamp})"
                ),
            )
    yield from _autoscaler_v2_problems(spec, at, groups)


def _autoscaler_v2_problems(
    spec: dict[str, Any], at: tuple[str | int, ...], groups: list[Any]
) -> Iterator[Problem]:
    head = spec.get("headGroupSpec")
    head_pod = _pod_spec(head)
    containers = head_pod.get("containers")
    first = containers[0] if isinstance(containers, list) and containers else None
    env_v2 = _env_value(first, "RAY_enable_autoscaler_v2")
    options = spec.get("autoscalerOptions")
    version = options.get("version") if isinstance(options, dict) else None
    if spec.get("enableInTreeAutoscaling") is not True:
        if env_v2 in ("1", "true"):
            yield (
                (*at, "enableInTreeAutoscaling"),
                (
                    f"RAY_enable_autoscaler_v2 is {json.dumps(env_v2)} in the head container but "
                    "autoscaling is off; expected enableInTreeAutoscaling: true"
                ),
            )
        return
    if version is not None and env_v2 is not None:
        yield (
            (*at, "autoscalerOptions", "version"),
            (
                "set together with the head env var RAY_enable_autoscaler_v2; expected only "
                "autoscalerOptions.version"
            ),
        )
    if version != "v2" and env_v2 not in ("1", "true"):
        return
    pods = [((*at, "headGroupSpec"), head_pod)]
    pods += [((*at, "workerGroupSpecs", i), _pod_spec(g)) for i, g in enumerate(groups)]
    for g_at, pod in pods:
        policy = pod.get("restartPolicy")
        if policy not in (None, "", "Never"):
            yield (
                (*g_at, "template", "spec", "restartPolicy"),
                f"{json.dumps(policy)} with autoscaler v2; expected Never or unset",
            )


def _rayjob_problems(doc: dict[str, Any]) -> Iterator[Problem]:
    """KubeRay's ValidateRayJobSpec, plus one rule of ours (both target fields)."""
    spec = doc.get("spec")
    if not isinstance(spec, dict):
        return
    cluster_spec = spec.get("rayClusterSpec")
    selector = spec.get("clusterSelector")
    uses_selector = isinstance(selector, dict) and bool(selector)
    if cluster_spec is not None and uses_selector:
        # Not a CEL rule nor a KubeRay validation in v1.7.0: the controller silently prefers
        # clusterSelector and ignores rayClusterSpec. Treated as an error because a manifest
        # that says both means something other than what will run.
        yield (
            ("spec", "clusterSelector"),
            (
                "set together with spec.rayClusterSpec; KubeRay would run the job on the selected "
                "cluster and ignore rayClusterSpec; expected exactly one of rayClusterSpec "
                "(a new cluster) or clusterSelector (an existing one)"
            ),
        )
    elif cluster_spec is None and not uses_selector:
        yield (
            ("spec",),
            "neither rayClusterSpec nor clusterSelector is set; expected exactly one of them",
        )
    if uses_selector and not selector.get("ray.io/cluster"):
        yield (
            ("spec", "clusterSelector"),
            (
                'no "ray.io/cluster" key; expected the name of the RayCluster to run on under '
                '"ray.io/cluster"'
            ),
        )
    shutdown = spec.get("shutdownAfterJobFinishes") is True
    ttl = _int(spec.get("ttlSecondsAfterFinished"))
    if ttl is not None and ttl > 0 and not shutdown:
        yield (
            ("spec", "ttlSecondsAfterFinished"),
            (
                f"{ttl} without shutdownAfterJobFinishes; expected shutdownAfterJobFinishes: true "
                "(the TTL only applies to a cluster that is shut down)"
            ),
        )
    if ttl is not None and ttl < 0:
        yield ("spec", "ttlSecondsAfterFinished"), f"{ttl} is negative; expected 0 or more"
    if spec.get("suspend") is True and not shutdown:
        yield (
            ("spec", "suspend"),
            (
                "a RayJob with shutdownAfterJobFinishes false cannot be suspended; expected "
                "shutdownAfterJobFinishes: true"
            ),
        )
    if spec.get("suspend") is True and uses_selector:
        yield (
            ("spec", "suspend"),
            "clusterSelector mode cannot be suspended; expected suspend unset or false",
        )
    mode = spec.get("submissionMode", "K8sJobMode")
    if mode == "SidecarMode":
        if uses_selector:
            yield (
                ("spec", "submissionMode"),
                (
                    "SidecarMode does not work with clusterSelector; expected K8sJobMode or "
                    "HTTPMode, or a rayClusterSpec"
                ),
            )
        for key in ("submitterPodTemplate", "submitterConfig"):
            if spec.get(key) is not None:
                yield ("spec", key), "not supported in SidecarMode; expected it unset"
        head = cluster_spec.get("headGroupSpec") if isinstance(cluster_spec, dict) else None
        policy = _pod_spec(head).get("restartPolicy")
        if policy not in (None, "", "Never"):
            yield (
                ("spec", "rayClusterSpec", "headGroupSpec", "template", "spec", "restartPolicy"),
                f"{json.dumps(policy)} in SidecarMode; expected Never or unset",
            )
    submitter = spec.get("submitterPodTemplate")
    if isinstance(submitter, dict) and isinstance(submitter.get("spec"), dict):
        yield from _pod_problems(submitter["spec"], ("spec", "submitterPodTemplate", "spec"))
    backoff = _int(spec.get("backoffLimit"))
    if backoff is not None and backoff < 0:
        yield ("spec", "backoffLimit"), f"{backoff} is negative; expected 0 or more"
    if backoff and backoff > 0 and mode == "InteractiveMode":
        yield (
            ("spec", "backoffLimit"),
            f"{backoff} in InteractiveMode; expected 0 or unset (InteractiveMode has no retries)",
        )
    deadline = _int(spec.get("activeDeadlineSeconds"))
    if deadline is not None and deadline <= 0:
        yield (
            ("spec", "activeDeadlineSeconds"),
            f"{deadline}; expected a positive number of seconds",
        )
    runtime_env = spec.get("runtimeEnvYAML")
    if isinstance(runtime_env, str) and runtime_env.strip():
        try:
            parsed = yaml.load(runtime_env, Loader=yaml.CSafeLoader)
        except yaml.YAMLError as exc:
            yield (
                ("spec", "runtimeEnvYAML"),
                f"not valid YAML ({_yaml_reason(exc)}); expected a YAML mapping",
            )
        else:
            if not isinstance(parsed, dict):
                yield (
                    ("spec", "runtimeEnvYAML"),
                    (f'parses to {_show(parsed)}; expected a YAML mapping such as "pip: [torch]"'),
                )
    yield from _cluster_spec_problems(cluster_spec, ("spec", "rayClusterSpec"))


def _semantic_problems(doc: dict[str, Any], kind: Kind) -> Iterator[Problem]:
    yield from _metadata_problems(doc, kind)
    spec = doc.get("spec")
    if kind.kind == "RayCluster":
        yield from _cluster_spec_problems(spec, ("spec",))
    elif kind.kind == "RayJob":
        yield from _rayjob_problems(doc)
    elif kind.kind == "RayService" and isinstance(spec, dict):
        yield from _cluster_spec_problems(
            spec.get("rayClusterConfig"), ("spec", "rayClusterConfig")
        )
    elif kind.kind == "ConfigMap":
        yield from _data_key_problems(doc, ("data", "binaryData"))
    elif kind.kind == "Secret":
        yield from _data_key_problems(doc, ("data", "stringData"))


# --------------------------------------------------------------------------------------------
# Kustomizations: the files they name must exist.
# --------------------------------------------------------------------------------------------


def _is_remote(entry: str) -> bool:
    return (
        "://" in entry
        or entry.startswith(("github.com/", "git@", "gitlab.com/"))
        or ("?ref=" in entry)
    )


def _kustomization_refs(doc: dict[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """(path, file or folder, role) for every local file a kustomization names."""
    for section in ("resources", "components", "bases", "crds"):
        entries = doc.get(section)
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, str) and not _is_remote(entry):
                yield (section, index), entry, "resource" if section != "crds" else "file"
    for section in ("configMapGenerator", "secretGenerator"):
        gens = doc.get(section)
        for g_index, gen in enumerate(gens if isinstance(gens, list) else []):
            if not isinstance(gen, dict):
                continue
            for key in ("files", "envs"):
                items = gen.get(key)
                for index, item in enumerate(items if isinstance(items, list) else []):
                    if isinstance(item, str):
                        yield (section, g_index, key, index), item.rpartition("=")[2], "file"
            if isinstance(gen.get("env"), str):
                yield (section, g_index, "env"), gen["env"], "file"
    merges = doc.get("patchesStrategicMerge")
    for index, entry in enumerate(merges if isinstance(merges, list) else []):
        if isinstance(entry, str) and "\n" not in entry:  # else an inline patch
            yield ("patchesStrategicMerge", index), entry, "patch"
    for section in ("patches", "patchesJson6902"):
        patches = doc.get(section)
        for index, patch in enumerate(patches if isinstance(patches, list) else []):
            if isinstance(patch, dict) and isinstance(patch.get("path"), str):
                yield (section, index, "path"), patch["path"], "patch"


def _kustomization_problems(doc: dict[str, Any], base: Path | None) -> Iterator[Problem]:
    if base is None:
        return  # documents without a file: nothing to resolve names against
    for at, entry, role in _kustomization_refs(doc):
        target = base / entry
        if not target.exists():
            yield (
                at,
                (
                    f"{json.dumps(entry)} does not exist (looked for {target}); expected a file or "
                    "folder next to the kustomization"
                ),
            )
        elif role == "resource" and target.is_dir():
            if not any((target / name).is_file() for name in KUSTOMIZATION_FILES):
                yield (
                    at,
                    (
                        f"folder {json.dumps(entry)} has no kustomization.yaml; expected a "
                        "kustomization folder or a manifest file"
                    ),
                )
        elif role != "resource" and not target.is_file():
            yield at, f"{json.dumps(entry)} is a folder; expected a file"


def kustomization_patch_files(doc: dict[str, Any], base: Path) -> set[Path]:
    """The patch files a kustomization names: partial objects, not manifests of their own."""
    return {
        (base / entry).resolve() for _at, entry, role in _kustomization_refs(doc) if role == "patch"
    }


# --------------------------------------------------------------------------------------------
# Documents and files.
# --------------------------------------------------------------------------------------------


def format_path(parts: Iterable[str | int]) -> str:
    """spec.workerGroupSpecs[0].template...; keys that are not identifiers go in ["..."]."""
    out = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
            continue
        part = str(part)
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def _position(doc: Any, parts: tuple[str | int, ...]) -> tuple[int, ...]:
    """Where a path sits in the document as written, for problems in reading order."""
    key: list[int] = []
    node = doc
    for part in parts:
        if isinstance(node, dict) and part in node:
            key.append(list(node).index(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            key.append(part)
            node = node[part]
        else:
            key.append(1 << 30)  # missing (a required field, a default): after what is there
            node = None
    return tuple(key)


def document_label(where: str, doc: Any) -> str:
    """`file#2 RayJob/name` (`RayJob/prefix-*` for a generateName)."""
    if not isinstance(doc, dict):
        return where
    kind = doc.get("kind") if isinstance(doc.get("kind"), str) else "(no kind)"
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        generate = meta.get("generateName")
        if not (isinstance(generate, str) and generate) and kind == "Kustomization":
            return f"{where} {kind}"  # a kustomization needs no name
        name = f"{generate}*" if isinstance(generate, str) and generate else "(no name)"
    return f"{where} {kind}/{name}"


def _as_kustomization(doc: Any) -> Any:
    """kustomize reads a kustomization.yaml without apiVersion and kind as a v1beta1 one."""
    if isinstance(doc, dict) and "apiVersion" not in doc and "kind" not in doc:
        return {"apiVersion": KINDS["Kustomization"].api_version, "kind": "Kustomization", **doc}
    return doc


def _check(doc: Any, base: Path | None, implicit_kustomization: bool = False) -> list[Problem]:
    if not isinstance(doc, dict):
        return [((), f"the document is {_show(doc)}; expected a mapping with apiVersion and kind")]
    if implicit_kustomization:
        doc = _as_kustomization(doc)
    problems: list[Problem] = []
    api_version, kind_name = doc.get("apiVersion"), doc.get("kind")
    for key, value, example in (
        ("apiVersion", api_version, "ray.io/v1"),
        ("kind", kind_name, "RayJob"),
    ):
        if value is None:
            problems.append(((key,), f'required field is missing; expected e.g. "{example}"'))
        elif not isinstance(value, str):
            problems.append(((key,), f"expected a string, got {_show(value)}"))
    if problems:
        return problems
    kind = KINDS.get(kind_name)
    if kind is None:
        known = ", ".join(
            f"{k.kind} ({k.api_version})" for k in sorted(_KIND_LIST, key=lambda k: k.kind)
        )
        reason = _NOT_CHECKED.get(kind_name, f"unknown kind {json.dumps(kind_name)}")
        return [(("kind",), f"{reason}; expected one of: {known}")]
    if api_version != kind.api_version:
        return [
            (
                ("apiVersion",),
                f"{json.dumps(api_version)} is not checked for {kind.kind}; expected "
                f"{json.dumps(kind.api_version)}",
            )
        ]
    instance = copy.deepcopy(doc)
    schema = _schema(kind.schema_file)
    _apply_defaults(instance, schema)
    for error in _validator(kind.schema_file).iter_errors(instance):
        problems.append((tuple(error.absolute_path), error.message))
    problems.extend(_semantic_problems(doc, kind))
    if kind.kind == "Kustomization":
        problems.extend(_kustomization_problems(doc, base))
    return problems


def _lines(label: str, doc: Any, problems: list[Problem]) -> list[str]:
    ordered = sorted(set(problems), key=lambda p: (_position(doc, p[0]), format_path(p[0]), p[1]))
    return [
        f"{label}: {format_path(at)}: {message}" if at else f"{label}: {message}"
        for at, message in ordered
    ]


def validate_documents(docs: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """One line per problem in these documents; each is labelled e.g. `path.yaml#2 RayJob/name`.

    Kustomization file references are not resolved here (there is no folder to resolve them
    against); validate_paths does that.
    """
    lines: list[str] = []
    for label, doc in docs:
        lines.extend(_lines(label, doc, _check(doc, None)))
    return lines


# ---- files --------------------------------------------------------------------------------


class _Loader(yaml.CSafeLoader):
    """Safe YAML as kubectl reads it: timestamps stay strings, duplicate keys are recorded."""

    duplicates: list[tuple[int, str]]

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _value in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(
                key_node, yaml.ScalarNode
            ):
                continue
            if key_node.value in seen:
                self.duplicates.append((key_node.start_mark.line + 1, key_node.value))
            seen.add(key_node.value)
        mapping = super().construct_mapping(node, deep=deep)
        if all(isinstance(key, str) for key in mapping):
            return mapping
        # JSON, which the API server reads, has only string keys: `1:` or `true:` become text.
        return {_string_key(key): value for key, value in mapping.items()}


def _string_key(key: Any) -> str:
    if isinstance(key, bool) or key is None:
        return json.dumps(key)
    return key if isinstance(key, str) else str(key)


# sigs.k8s.io/yaml leaves 2026-01-31 a string; PyYAML would make it a date.
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.CSafeLoader.yaml_implicit_resolvers.items()
}


def _yaml_reason(exc: yaml.YAMLError) -> str:
    def at(mark: Any) -> str:
        return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""

    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    reason = f"{problem}{at(getattr(exc, 'problem_mark', None))}"
    context = getattr(exc, "context", None)
    if context:
        reason = f"{context}{at(getattr(exc, 'context_mark', None))}: {reason}"
    return reason


@dataclass
class LoadedFile:
    """A file's documents (1-based index, document, duplicate keys) and its read problem."""

    path: Path
    documents: list[tuple[int, Any, list[tuple[int, str]]]] = field(default_factory=list)
    problem: str | None = None


def load_file(path: Path) -> LoadedFile:
    """Every YAML document of a file; a file that stops being YAML keeps what came before."""
    loaded = LoadedFile(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        loaded.problem = f"{path}: not UTF-8 text; expected a YAML file"
        return loaded
    except OSError as exc:
        loaded.problem = f"{path}: cannot be read ({exc.strerror or exc})"
        return loaded
    loader = _Loader(text)
    index = 0
    try:
        while True:
            index += 1  # the document being read, also when reading it fails
            if not loader.check_node():
                break
            loader.duplicates = []
            doc = loader.construct_document(loader.get_node())
            if doc is not None:  # an empty document (a stray ---) is no document
                loaded.documents.append((index, doc, loader.duplicates))
    except yaml.YAMLError as exc:
        loaded.problem = f"{path}#{index}: not valid YAML: {_yaml_reason(exc)}"
    finally:
        loader.dispose()
    return loaded


@dataclass
class Report:
    """What validate_paths found: problem lines, and how many documents and files it read."""

    problems: list[str] = field(default_factory=list)
    documents: int = 0
    files: int = 0
    patch_files: int = 0


def _discover(paths: list[Path], report: Report) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(
                p
                for p in path.rglob("*")
                if p.suffix in (".yaml", ".yml")
                and p.is_file()
                # .git, .venv and the like hold no manifests of this project
                and not any(part.startswith(".") for part in p.relative_to(path).parts[:-1])
            )
            if not found:
                report.problems.append(f"{path}: no *.yaml or *.yml files in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            report.problems.append(f"{path}: no such file or folder")
    unique: dict[Path, Path] = {}
    for file in files:
        unique.setdefault(file.resolve(), file)
    return list(unique.values())


def check_paths(paths: list[Path]) -> Report:
    """Validate every manifest in these files and folders (recursively: *.yaml, *.yml)."""
    report = Report()
    loaded = [load_file(path) for path in _discover(paths, report)]
    patches: set[Path] = set()
    for file in loaded:
        for _index, doc, _dups in file.documents:
            if isinstance(doc, dict) and (
                doc.get("kind") == "Kustomization" or file.path.name in KUSTOMIZATION_FILES
            ):
                patches |= kustomization_patch_files(doc, file.path.parent)
    for file in loaded:
        report.files += 1
        is_patch = file.path.resolve() in patches
        report.patch_files += is_patch
        for index, doc, duplicates in file.documents:
            if isinstance(doc, dict) and set(doc) == {"cluster"}:
                continue  # a raytune-ft cluster file (`render --cluster`), not a manifest
            report.documents += 1
            implicit = file.path.name in KUSTOMIZATION_FILES
            label = document_label(
                f"{file.path}#{index}", _as_kustomization(doc) if implicit else doc
            )
            for line, key in duplicates:
                report.problems.append(
                    f"{label}: line {line}: duplicate key {json.dumps(key)}; expected each key "
                    "once (the API server rejects duplicate fields)"
                )
            if is_patch:
                continue  # a patch is a partial object by design; parsing it was the check
            report.problems.extend(_lines(label, doc, _check(doc, file.path.parent, implicit)))
        if file.problem:
            report.problems.append(file.problem)
    if report.files and not report.documents and not report.problems:
        report.problems.append(
            f"{', '.join(map(str, paths))}: no YAML documents; expected at least one manifest"
        )
    return report


def validate_paths(paths: list[Path]) -> list[str]:
    """One line per problem in the manifests of these files and folders (see check_paths)."""
    return check_paths(paths).problems
