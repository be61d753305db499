"""`raytune-ft k8s render`: load a spec, render its objects, validate them, write one file each.

Files are deterministic (no timestamps, fixed key order), so rendering twice writes nothing new
and a diff of a folder shows only what a spec change changed. A file that exists with other
content is never overwritten without `force`: it may hold someone's edits.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from raytune_ft import __version__
from raytune_ft.errors import UserError
from raytune_ft.k8s.render import RenderRequest, job_overrides, render, worker_groups

# One file per kind; the kustomization lists the objects that run the job (the RayCluster is
# for interactive use: applying it too would start a second cluster beside the job's own).
FILE_NAMES = {
    "ServiceAccount": "serviceaccount.yaml",
    "ConfigMap": "configmap.yaml",
    "PersistentVolumeClaim": "pvc.yaml",
    "RayCluster": "raycluster.yaml",
    "RayJob": "rayjob.yaml",
}
NOT_IN_KUSTOMIZATION = {"RayCluster"}
KUSTOMIZATION = "kustomization.yaml"
HEADER = (
    f"# Rendered by `raytune-ft k8s render` (raytune-ft {__version__}). Change the spec or the\n"
    "# cluster file and render again rather than editing this file.\n"
)


@dataclass(frozen=True)
class Rendered:
    """The objects of one render and the text of each file, in writing order."""

    objects: list[dict[str, Any]]
    files: dict[str, str]


def render_spec(
    spec_file: Path, overrides: list[str], cluster_file: Path | None = None
) -> list[dict[str, Any]]:
    """Load the spec (with the cluster file and --set), render and validate its objects."""
    from raytune_ft.k8s.validate import validate_documents
    from raytune_ft.spec import apply_overrides, load_spec
    from raytune_ft.spec.bounded_yaml import load_yaml, read_spec_text

    spec = load_spec(spec_file, overrides, cluster_file=cluster_file)
    raw, _lines = load_yaml(read_spec_text(spec_file), str(spec_file))
    written, _blame = apply_overrides(raw, overrides)
    request = RenderRequest(
        spec, spec_file, written, tuple(overrides), cluster_replaced=cluster_file is not None
    )
    objects = render(request)
    # The job re-reads the spec file with its --set list (no cluster file): it must load there.
    try:
        load_spec(spec_file, job_overrides(request, worker_groups(spec)))
    except UserError as exc:
        raise UserError(
            [f"the job's spec (the file with its --set list): {p}" for p in exc.problems]
        ) from None
    problems = validate_documents([(_label(o), o) for o in objects])
    if problems:  # the renderer's own output must be valid: a bug, not bad input
        raise RuntimeError("rendered objects fail validation:\n" + "\n".join(problems))
    return objects


def _label(obj: dict[str, Any]) -> str:
    return f"{FILE_NAMES[obj['kind']]} {obj['kind']}/{obj['metadata']['name']}"


def manifest_files(objects: list[dict[str, Any]]) -> Rendered:
    files = {FILE_NAMES[o["kind"]]: HEADER + to_yaml(o) for o in objects}
    listed = [FILE_NAMES[o["kind"]] for o in objects if o["kind"] not in NOT_IN_KUSTOMIZATION]
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "namespace": objects[0]["metadata"]["namespace"],
        "resources": listed,
    }
    files[KUSTOMIZATION] = HEADER + to_yaml(kustomization)
    return Rendered(objects, files)


class _Dumper(yaml.SafeDumper):
    """Block style; multi-line strings (the spec, runtimeEnvYAML) as literal blocks; no anchors
    (the head and worker pods share volume dicts, which YAML would otherwise alias)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)


def to_yaml(obj: Any) -> str:
    return yaml.dump(
        obj,
        Dumper=_Dumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=1 << 16,  # long lines (the entrypoint) stay whole
    )


@dataclass(frozen=True)
class WriteReport:
    written: list[str]
    unchanged: list[str]
    others: list[str]  # YAML files in the folder this render did not produce


def write_files(folder: Path, files: dict[str, str], force: bool) -> WriteReport:
    """Write every file; refuse (UserError) to replace one whose content differs unless force."""
    try:
        return _write_files(folder, files, force)
    except OSError as exc:  # a parent that is a file, no permission, a read-only disk
        where = exc.filename or folder
        raise UserError(
            f"-o {folder}: cannot write {where}: {exc.strerror or exc}; expected a folder you "
            "can write"
        ) from None


def _write_files(folder: Path, files: dict[str, str], force: bool) -> WriteReport:
    if folder.exists() and not folder.is_dir():
        raise UserError(f"-o {folder}: is a file; expected a folder for the manifests")
    changed = [n for n, text in files.items() if _differs(folder / n, text)]
    existing = [n for n in changed if (folder / n).exists()]
    if existing and not force:
        raise UserError(
            [
                f"-o {folder}: {name} exists with other content; expected a new or "
                "unchanged file (pass --force to overwrite it)"
                for name in existing
            ]
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name in changed:
        _write_atomically(folder / name, files[name])
    others = sorted(
        p.name for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.name not in files
    )
    unchanged = [n for n in files if n not in changed]
    return WriteReport(written=changed, unchanged=unchanged, others=others)


def _differs(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") != text
    except (FileNotFoundError, UnicodeDecodeError):
        return True
    except IsADirectoryError:
        raise UserError(f"{path}: is a folder; expected a manifest file there") from None


def _write_atomically(path: Path, text: str) -> None:
    # A name of its own per process: two renders into one folder never share a temp file.
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(text, encoding="utf-8")
    temp.replace(path)


def render_to_folder(
    spec_file: Path,
    overrides: list[str],
    cluster_file: Path | None,
    folder: Path,
    force: bool,
) -> list[str]:
    """The whole command; returns the lines to print."""
    rendered = manifest_files(render_spec(spec_file, overrides, cluster_file))
    report = write_files(folder, rendered.files, force)
    kinds = {FILE_NAMES[o["kind"]]: o for o in rendered.objects}
    lines = []
    for name in rendered.files:
        obj = kinds.get(name)
        what = f"{obj['kind']}/{obj['metadata']['name']}" if obj else "Kustomization"
        state = "wrote" if name in report.written else "unchanged"
        note = (
            " (not in the kustomization: for interactive use)" if name == "raycluster.yaml" else ""
        )
        lines.append(f"{state} {folder / name}  {what}{note}")
    for name in report.others:
        lines.append(f"note: {folder / name} was not written by this render; remove it if stale")
    lines += [
        "next:",
        f"  raytune-ft k8s validate {folder}",
        f"  kubectl apply -k {folder}    (or: raytune-ft k8s apply {folder})",
    ]
    return lines
