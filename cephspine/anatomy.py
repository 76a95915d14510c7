"""Landmark names and order for each supported anatomy: the single source of truth.

Orders follow ``domain.md``: the ISBI 2015 challenge order for cephalograms, and
T1…L5 × (TL, TR, BL, BR) for the spine (point ``k`` is vertebra ``k // 4``, corner ``k % 4``).
"""

from __future__ import annotations

from typing import Final

CEPH_LANDMARKS: Final[tuple[str, ...]] = (
    "sella",
    "nasion",
    "orbitale",
    "porion",
    "subspinale",
    "supramentale",
    "pogonion",
    "menton",
    "gnathion",
    "gonion",
    "lower_incisal_incision",
    "upper_incisal_incision",
    "upper_lip",
    "lower_lip",
    "subnasale",
    "soft_tissue_pogonion",
    "posterior_nasal_spine",
    "anterior_nasal_spine",
    "articulare",
)
"""The 19 ISBI 2015 cephalometric landmarks, in the challenge's order."""

CEPH_ABBREVIATIONS: Final[tuple[str, ...]] = (
    "S", "N", "Or", "Po", "A", "B", "Pog", "Me", "Gn", "Go",
    "LIT", "UIT", "UL", "LL", "Sn", "Pog'", "PNS", "ANS", "Ar",
)  # fmt: skip
"""Short names of :data:`CEPH_LANDMARKS`, same order."""

VERTEBRAE: Final[tuple[str, ...]] = tuple([f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)])
"""The 17 vertebrae of the spine model, top to bottom."""

CORNERS: Final[tuple[str, ...]] = ("TL", "TR", "BL", "BR")
"""Corner order within a vertebra, as seen on the image (x right, y down)."""

SPINE_LANDMARKS: Final[tuple[str, ...]] = tuple(f"{v}_{c}" for v in VERTEBRAE for c in CORNERS)
"""The 68 spine corners, e.g. ``"T1_TL"``; index k is vertebra k // 4, corner k % 4."""

ANATOMIES: Final[dict[str, tuple[str, ...]]] = {
    "ceph": CEPH_LANDMARKS,
    "spine": SPINE_LANDMARKS,
}


def landmark_names(anatomy: str) -> tuple[str, ...]:
    """Return the landmark names of ``anatomy`` (``"ceph"`` or ``"spine"``).

    Raises:
        KeyError: for an unknown anatomy, listing the known ones.
    """
    try:
        return ANATOMIES[anatomy]
    except KeyError:
        raise KeyError(f"unknown anatomy {anatomy!r}; known: {sorted(ANATOMIES)}") from None


def ceph_index(name: str) -> int:
    """Index of a cephalometric landmark by full name or abbreviation (``"S"``, ``"sella"``)."""
    if name in CEPH_LANDMARKS:
        return CEPH_LANDMARKS.index(name)
    if name in CEPH_ABBREVIATIONS:
        return CEPH_ABBREVIATIONS.index(name)
    raise KeyError(f"unknown cephalometric landmark {name!r}")
