"""Example images shipped with cephspine."""

from __future__ import annotations

from pathlib import Path

_EXAMPLES: dict[str, str] = {
    "ceph": "ceph_example.jpg",
}


def example_path(kind: str = "ceph") -> Path:
    """Path of a bundled example radiograph.

    Args:
        kind: ``"ceph"``: a lateral cephalogram from the ISBI 2015 training set
            (image 145; 1935 × 2400 px, 0.1 mm per pixel, research use only).

    Returns:
        The path of the image file inside the installed package.

    Raises:
        KeyError: for an unknown kind, listing the known ones.
    """
    try:
        name = _EXAMPLES[kind]
    except KeyError:
        raise KeyError(f"unknown example {kind!r}; known: {sorted(_EXAMPLES)}") from None
    return Path(__file__).resolve().parent / name
