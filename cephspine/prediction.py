"""The :class:`Prediction` type shared by every detector and everything downstream."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from cephspine.errors import LandmarkError
from cephspine.radiograph import Spacing

SUPPLIED_MODEL = "supplied"
"""The :attr:`Prediction.model` of landmarks supplied by a person instead of detected
(``cephspine.analyze(image, landmarks=...)``; see :mod:`cephspine.supplied`)."""


@dataclass(frozen=True, eq=False)
class Prediction:
    """Landmarks predicted on one radiograph.

    Attributes:
        names: landmark names, in model order (see :mod:`cephspine.anatomy`).
        xy_px: ``(N, 2)`` float array of ``(x, y)`` positions in original-image pixels,
            x to the right, y down, origin at the centre of the top-left pixel.
        confidence: ``(N,)`` floats in [0, 1]; see the model card for what they mean
            (for the shipped models: the calibrated probability that the point is
            within 2 mm of the truth). NaN for landmarks supplied by a person.
        image_shape: ``(height, width)`` of the radiograph in pixels.
        spacing: the radiograph's pixel spacing, or ``None``.
        model: model name (``"ceph"``, ``"spine"``), or :data:`SUPPLIED_MODEL` for
            landmarks supplied by a person.
        model_version: version string of the weights (empty for supplied landmarks).
        source: file name of the radiograph, or ``None``.
        warnings: human-readable warnings raised while predicting.
        meta: extra information (e.g. registration status, timings; for supplied
            landmarks ``landmarks_file``, the name of the file they came from).
    """

    names: tuple[str, ...]
    xy_px: npt.NDArray[np.float64]
    confidence: npt.NDArray[np.float64]
    image_shape: tuple[int, int]
    spacing: Spacing | None
    model: str
    model_version: str
    source: str | None = None
    warnings: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        xy = np.asarray(self.xy_px, dtype=np.float64)
        conf = np.asarray(self.confidence, dtype=np.float64)
        n = len(self.names)
        if xy.shape != (n, 2):
            raise LandmarkError(f"xy_px must have shape ({n}, 2), got {xy.shape}")
        if conf.shape != (n,):
            raise LandmarkError(f"confidence must have shape ({n},), got {conf.shape}")
        object.__setattr__(self, "xy_px", xy)
        object.__setattr__(self, "confidence", conf)
        object.__setattr__(self, "names", tuple(self.names))

    def __eq__(self, other: object) -> bool:
        """Value equality of the landmarks (positions and confidences compared
        element-wise, NaN equal to NaN) and of every other field except :attr:`meta`
        (run details such as timings, which differ between two runs on one image)."""
        if not isinstance(other, Prediction):
            return NotImplemented
        return (
            self.names == other.names
            and np.array_equal(self.xy_px, other.xy_px, equal_nan=True)
            and np.array_equal(self.confidence, other.confidence, equal_nan=True)
            and tuple(self.image_shape) == tuple(other.image_shape)
            and self.spacing == other.spacing
            and self.model == other.model
            and self.model_version == other.model_version
            and self.source == other.source
            and tuple(self.warnings) == tuple(other.warnings)
        )

    __hash__ = None  # type: ignore[assignment]  # equal by value, and holds arrays

    @property
    def supplied(self) -> bool:
        """Whether the landmarks were supplied by a person rather than detected (they have
        no confidence)."""
        return self.model == SUPPLIED_MODEL

    @property
    def wrong_anatomy(self) -> bool:
        """Whether the detector found that the landmarks do not look like its model's
        anatomy (a spine film through the ``ceph`` model; :mod:`cephspine.plausibility`):
        ``meta["wrong_anatomy"]``, ``False`` when absent (supplied landmarks)."""
        return bool(self.meta.get("wrong_anatomy", False))

    @property
    def provenance(self) -> str:
        """Where the landmarks came from, in words: ``"model ceph version 0.2.0"``, or
        ``"supplied by a person (file corrected.csv)"``."""
        if not self.supplied:
            return f"model {self.model} version {self.model_version}"
        file = self.meta.get("landmarks_file")
        return "supplied by a person" + (f" (file {file})" if file else "")

    @property
    def xy_mm(self) -> npt.NDArray[np.float64] | None:
        """``(N, 2)`` positions in millimetres (pixels × spacing), or ``None`` without spacing."""
        if self.spacing is None:
            return None
        return self.xy_px * self.spacing.xy_mm

    def __len__(self) -> int:
        return len(self.names)

    def point(self, name: str) -> npt.NDArray[np.float64]:
        """The ``(x, y)`` pixel position of one landmark by name."""
        return self.xy_px[self.names.index(name)]

    def to_dataframe(self) -> Any:
        """One row per landmark: ``image, model, landmark_index, landmark, x_px, y_px,
        x_mm, y_mm, confidence`` (mm columns are NaN when spacing is unknown)."""
        import pandas as pd

        mm = self.xy_mm
        return pd.DataFrame(
            {
                "image": self.source,
                "model": self.model,
                "landmark_index": np.arange(len(self.names)),
                "landmark": list(self.names),
                "x_px": self.xy_px[:, 0],
                "y_px": self.xy_px[:, 1],
                "x_mm": mm[:, 0] if mm is not None else np.nan,
                "y_mm": mm[:, 1] if mm is not None else np.nan,
                "confidence": self.confidence,
            }
        )

    def by_vertebra(self) -> npt.NDArray[np.float64]:
        """Spine predictions as a ``(17, 4, 2)`` array: vertebra T1…L5, corner TL, TR, BL, BR, (x, y) px.

        Raises:
            LandmarkError: for a prediction that is not of the 68 spine corners.
        """
        from cephspine.anatomy import SPINE_LANDMARKS

        if self.names != SPINE_LANDMARKS:
            raise LandmarkError(f"by_vertebra() needs the 68 spine corners, this is a {self.model!r} prediction")
        return self.xy_px.reshape(17, 4, 2)

    def vertebra_dataframe(self) -> Any:
        """Spine predictions with ``vertebra`` and ``corner`` columns (one row per corner)."""
        from cephspine.anatomy import CORNERS, VERTEBRAE

        self.by_vertebra()  # validates the landmark set
        df = self.to_dataframe()
        df.insert(3, "vertebra", np.repeat(VERTEBRAE, len(CORNERS)))
        df.insert(4, "corner", np.tile(CORNERS, len(VERTEBRAE)))
        return df

    def __repr__(self) -> str:
        sp = f"{self.spacing.row_mm:g}x{self.spacing.col_mm:g} mm" if self.spacing else "no spacing"
        origin = self.provenance if self.supplied else f"{self.model} {self.model_version}"
        conf = "no confidence" if self.supplied else f"mean confidence {float(np.mean(self.confidence)):.2f}"
        return (
            f"Prediction({origin}, {len(self.names)} landmarks, "
            f"image {self.image_shape[0]}x{self.image_shape[1]} px, {sp}, {conf}"
            + (f", {len(self.warnings)} warning(s)" if self.warnings else "")
            + ")"
        )
