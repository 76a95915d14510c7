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


MEAN_SHAPES: Final[dict[str, tuple[tuple[float, float], ...]]] = {
    # ISBI 2015 training images 001-120 (mean of the two doctors)
    "ceph": (
        (-0.1901, -0.3052), (0.1157, -0.3084), (0.0437, -0.1860), (-0.3077, -0.2269),
        (0.0818, -0.0278), (0.0472, 0.1455), (0.0370, 0.2118), (0.0023, 0.2388),
        (0.0252, 0.2315), (-0.2677, 0.0484), (0.0901, 0.0650), (0.0977, 0.0722),
        (0.1648, 0.0321), (0.1416, 0.1339), (0.1417, -0.0335), (0.0843, 0.2320),
        (-0.1251, -0.0957), (0.0948, -0.0623), (-0.2771, -0.1654),
    ),
    # the 363 AASCE training images of the spine model (seeded 80/20 split of the clean records)
    "spine": (
        (-0.0124, -0.1821), (0.0188, -0.1831), (-0.0114, -0.1707), (0.0184, -0.1710),
        (-0.0106, -0.1657), (0.0181, -0.1660), (-0.0100, -0.1532), (0.0176, -0.1523),
        (-0.0094, -0.1480), (0.0171, -0.1470), (-0.0102, -0.1346), (0.0156, -0.1321),
        (-0.0104, -0.1292), (0.0150, -0.1265), (-0.0128, -0.1150), (0.0126, -0.1109),
        (-0.0136, -0.1096), (0.0118, -0.1056), (-0.0173, -0.0945), (0.0087, -0.0897),
        (-0.0182, -0.0888), (0.0078, -0.0846), (-0.0222, -0.0728), (0.0051, -0.0686),
        (-0.0230, -0.0667), (0.0044, -0.0637), (-0.0261, -0.0500), (0.0028, -0.0475),
        (-0.0263, -0.0434), (0.0024, -0.0426), (-0.0278, -0.0260), (0.0024, -0.0261),
        (-0.0275, -0.0192), (0.0024, -0.0209), (-0.0269, -0.0010), (0.0041, -0.0038),
        (-0.0258, 0.0058), (0.0045, 0.0016), (-0.0237, 0.0243), (0.0084, 0.0190),
        (-0.0220, 0.0317), (0.0096, 0.0253), (-0.0189, 0.0505), (0.0146, 0.0437),
        (-0.0171, 0.0580), (0.0165, 0.0510), (-0.0138, 0.0772), (0.0217, 0.0708),
        (-0.0120, 0.0850), (0.0238, 0.0796), (-0.0092, 0.1046), (0.0275, 0.1006),
        (-0.0080, 0.1127), (0.0288, 0.1104), (-0.0072, 0.1323), (0.0299, 0.1317),
        (-0.0073, 0.1410), (0.0303, 0.1422), (-0.0086, 0.1614), (0.0300, 0.1640),
        (-0.0099, 0.1709), (0.0297, 0.1740), (-0.0127, 0.1922), (0.0286, 0.1961),
        (-0.0146, 0.2020), (0.0282, 0.2051), (-0.0176, 0.2223), (0.0273, 0.2257),
    ),
}  # fmt: skip
"""Mean landmark shape of each anatomy, in landmark order: the generalised Procrustes mean
of the training annotations (each shape centred, scaled to unit norm and rotated onto the
mean), ``(x, y)`` with x to the right and y down. The reference of the shape test of
:mod:`cephspine.plausibility`."""


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
