"""Data-only registry of the shipped models (no torch import).

A model is a directory holding ``model.safetensors`` and ``card.json`` (and a readable
``MODEL_CARD.md``). Shipped models live in ``cephspine/weights/<name>/``; the environment
variable ``CEPHSPINE_WEIGHTS`` may name another directory with ``<name>/`` sub-folders
(e.g. your own training runs) whose names are known too; a shipped name always means the
shipped model.
"""

from __future__ import annotations

import json
import math
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

    A name is a string without a path separator: it always means a model of that name
    among the shipped ones, else in ``$CEPHSPINE_WEIGHTS``, never a folder of that name in
    the working directory (so a local ``ceph/`` cannot replace the shipped model). A model
    directory is given as a path: an :class:`os.PathLike`, or a string with a separator
    (``"./ceph"``, ``"runs/model"``, an absolute path).

    Raises:
        UnknownModelError: a name that is not a known model, or a path that is not a
            directory.
    """
    if isinstance(name_or_dir, str) and not any(s and s in name_or_dir for s in (os.sep, os.altsep)):
        name = name_or_dir
        dirs = [WEIGHTS_DIR, *(d for d in _search_dirs() if d != WEIGHTS_DIR)]
        for d in dirs:
            if name not in (".", "..") and (d / name / CARD_FILE).is_file():
                return d / name
        hint = f"; to load the folder {name!r}, give it as a path (./{name})" if Path(name).is_dir() else ""
        raise UnknownModelError(f"unknown model {name!r}: not one of the known models {available_models()}{hint}")
    p = Path(name_or_dir)
    if p.is_dir():
        return p  # a directory without a card: read_card says what is missing
    raise UnknownModelError(f"model directory {str(p)!r} not found (known models: {available_models()})")


def experimental_status(card: dict[str, Any]) -> str | None:
    """The card's note (without a final full stop) when it marks the model experimental
    (``"status": "experimental"``: below its accuracy targets), else ``None``."""
    if card.get("status") != "experimental":
        return None
    return str(card.get("status_note", "below its accuracy targets")).rstrip(".")


MAX_CARD_BYTES = 4 * 2**20
"""Largest accepted ``card.json`` (the shipped cards are a few kilobytes)."""

MAX_WEIGHTS_BYTES = 512 * 2**20
"""Largest accepted ``model.safetensors`` (the shipped ones are under 10 MB)."""

MAX_LANDMARKS = 1024
"""Most landmarks a model card may name."""


def read_card(model_dir: Path) -> dict[str, Any]:
    """Read and validate ``card.json`` of a model directory: a regular file of at most
    :data:`MAX_CARD_BYTES`, valid JSON without NaN or infinity, and each entry of the
    expected type and range (:func:`validate_card`).

    Raises:
        ModelLoadError: missing, unreadable, oversized or invalid card, naming the file and
            the entry.
    """
    from cephspine.io.bounded import read_bounded

    path = model_dir / CARD_FILE
    try:
        raw = read_bounded(path, MAX_CARD_BYTES)
    except FileNotFoundError:
        raise ModelLoadError(
            f"{path}: model card missing; a model directory needs {CARD_FILE} and {WEIGHTS_FILE}"
        ) from None
    except OSError as exc:
        raise ModelLoadError(f"{path}: unreadable model card ({exc.strerror or exc})") from None
    try:
        card = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{path}: unreadable model card ({type(exc).__name__}: {exc})") from None
    validate_card(card, path)
    return card


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number a model card may hold")


_TEXT_KEYS = ("name", "version", "anatomy", "architecture", "status", "status_note", "license_note", "trained_ids")
_DICT_KEYS = ("config", "confidence", "registration", "facing", "levels", "training", "metrics")


def validate_card(card: Any, path: Path) -> None:
    """Check the entries of a parsed model card that loading and listing use: types,
    finite numbers and ranges. The configuration's own fields are checked by
    :class:`~cephspine.pipeline.StageConfig`.

    Raises:
        ModelLoadError: naming ``path`` and the first invalid entry.
    """

    def bad(where: str, why: str) -> ModelLoadError:
        return ModelLoadError(f"{path}: invalid model card entry {where!r}: {why}")

    if not isinstance(card, dict):
        raise ModelLoadError(f"{path}: model card must be a JSON object")
    missing = [k for k in REQUIRED_CARD_KEYS if k not in card]
    if missing:
        raise ModelLoadError(f"{path}: model card lacks {missing}")
    for k in _TEXT_KEYS:
        if k in card and not (isinstance(card[k], str) and len(card[k]) <= 10_000):
            raise bad(k, "must be a text of at most 10 000 characters")
    for k in ("name", "version", "anatomy"):
        if not card[k].strip():
            raise bad(k, "must not be empty")
    for k in _DICT_KEYS:
        if k in card and not isinstance(card[k], dict):
            raise bad(k, f"must be a JSON object, not {type(card[k]).__name__}")
    names = card["landmarks"]
    if not (isinstance(names, list) and 0 < len(names) <= MAX_LANDMARKS):
        raise bad("landmarks", f"must be a list of 1 to {MAX_LANDMARKS} names")
    if not all(isinstance(n, str) and n.strip() and len(n) <= 200 for n in names):
        raise bad("landmarks", "every name must be a non-empty text of at most 200 characters")
    if len(set(names)) != len(names):
        raise bad("landmarks", "names must be unique")
    trained = card.get("trained_images")
    if trained is not None and not (isinstance(trained, list) and all(isinstance(n, str) for n in trained)):
        raise bad("trained_images", "must be a list of image names")
    if "detect_facing" in card and not isinstance(card["detect_facing"], bool):
        raise bad("detect_facing", "must be true or false")
    from cephspine.radiograph import MAX_SPACING_MM, MIN_SPACING_MM

    _number(card, "training_spacing_mm", MIN_SPACING_MM, MAX_SPACING_MM, bad)
    _number(card, "wrong_anatomy_threshold", 0.0, 1e6, bad)
    _number(card.get("facing", {}), "skip_mirror_at_mean_coarse_peak", 0.0, 1.0, bad, "facing.")
    _number(card.get("registration", {}), "auto_below_mean_coarse_peak", 0.0, 1.0, bad, "registration.")
    for k in ("mre_mm", "sd_mm", "sdr_2mm_pct", "cobb_smape_pct"):
        _number(card.get("metrics", {}), k, 0.0, 1e6, bad, "metrics.")
    conf = card.get("confidence")
    if conf is not None:
        coef = conf.get("coef")
        if not (isinstance(coef, list) and len(coef) == 4 and all(_finite(c) for c in coef)):
            raise bad("confidence.coef", "must be a list of 4 finite numbers")
        if "radius_mm" not in conf:
            raise bad("confidence.radius_mm", "missing")
        _number(conf, "radius_mm", 1e-6, 1e3, bad, "confidence.")
        off = conf.get("landmark_offsets")
        if off is not None and not (isinstance(off, list) and len(off) == len(names) and all(_finite(v) for v in off)):
            raise bad("confidence.landmark_offsets", f"must be {len(names)} finite numbers, one per landmark")
    levels = card.get("levels")
    if levels is not None:
        for k in ("found_min_prob", "doubt_confidence"):
            if k not in levels:
                raise bad(f"levels.{k}", "missing")
            _number(levels, k, 0.0, 1.0, bad, "levels.")
        if levels.get("ambiguous_ratio") is not None:
            _number(levels, "ambiguous_ratio", 0.0, 1e6, bad, "levels.")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _number(d: dict[str, Any], key: str, lo: float, hi: float, bad: Any, prefix: str = "") -> None:
    """``d[key]``, when present, must be a finite number within ``[lo, hi]``."""
    if key in d and not (_finite(d[key]) and lo <= d[key] <= hi):
        raise bad(prefix + key, f"must be a number from {lo:g} to {hi:g}, not {d[key]!r}")
