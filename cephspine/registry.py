"""Data-only registry of the shipped models (no torch import).

A model is a directory holding ``model.safetensors`` and ``card.json`` (and a readable
``MODEL_CARD.md``). Shipped models live in ``cephspine/weights/<name>/``; the environment
variable ``CEPHSPINE_WEIGHTS`` may name another directory with ``<name>/`` sub-folders
(e.g. your own training runs), searched first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cephspine.errors import ModelLoadError, UnknownModelError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARD_FILE = "card.json"
WEIGHTS_FILE = "model.safetensors"
TEMPLATE_FILE = "template.npz"
REQUIRED_CARD_KEYS = ("name", "version", "anatomy", "landmarks", "config", "architecture")


def _search_dirs() -> list[Path]:
    dirs = []
    env = os.environ.get("CEPHSPINE_WEIGHTS")
    if env:
        dirs.append(Path(env))
    dirs.append(WEIGHTS_DIR)
    return dirs


def available_models() -> list[str]:
    """Names of the models that ``Detector.from_pretrained`` accepts."""
    names: set[str] = set()
    for d in _search_dirs():
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if (p / CARD_FILE).is_file())
    return sorted(names)


def resolve(name_or_dir: str | os.PathLike[str]) -> Path:
    """Directory of a model given by name (``"ceph"``) or by path.

    Raises:
        UnknownModelError: a name that is neither a known model nor a directory.
    """
    p = Path(name_or_dir)
    if p.is_dir() and (p / CARD_FILE).is_file():
        return p
    name = str(name_or_dir)
    # a bare name ("ceph") is looked up first, so that an unrelated folder of that name in
    # the working directory does not hide the model; "./ceph" or a Path is always a path
    is_name = isinstance(name_or_dir, str) and not any(s and s in name for s in (os.sep, os.altsep))
    if is_name:
        for d in _search_dirs():
            if (d / name / CARD_FILE).is_file():
                return d / name
    if p.is_dir():
        return p  # a directory without a card: read_card says what is missing
    raise UnknownModelError(
        f"unknown model {name!r}: not a directory and not one of the known models {available_models()}"
    )


def experimental_status(card: dict[str, Any]) -> str | None:
    """The card's note (without a final full stop) when it marks the model experimental
    (``"status": "experimental"``: below its accuracy targets), else ``None``."""
    if card.get("status") != "experimental":
        return None
    return str(card.get("status_note", "below its accuracy targets")).rstrip(".")


def read_card(model_dir: Path) -> dict[str, Any]:
    """Read and validate ``card.json`` of a model directory.

    Raises:
        ModelLoadError: missing or unreadable card, or missing keys.
    """
    path = model_dir / CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            f"{path}: model card missing; a model directory needs {CARD_FILE} and {WEIGHTS_FILE}"
        ) from None
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable model card ({exc})") from None
    if not isinstance(card, dict):
        raise ModelLoadError(f"{path}: model card must be a JSON object")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ModelLoadError(f"{path}: model card lacks {missing}")
    return card
