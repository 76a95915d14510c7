"""Perturbations for the robustness evaluation keep the landmarks on their anatomy."""

from __future__ import annotations

import numpy as np
import pytest

from cephspine.errors import CephspineError, InvalidArgumentError
from cephspine.perturb import PERTURBATIONS, perturb

H, W, MM = 400, 300, 0.1


def dots(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A dark image with a bright 5 × 5 dot at each of 19 landmarks spread over its middle."""
    rng = np.random.default_rng(seed)
    xy = np.column_stack([rng.uniform(110, 190, 19), rng.uniform(140, 260, 19)])
    img = np.zeros((H, W), dtype=np.float32)
    for x, y in np.round(xy).astype(int):
        img[y - 2 : y + 3, x - 2 : x + 3] = 1.0
    return img, xy


@pytest.mark.parametrize("name", ["none", *PERTURBATIONS])
@pytest.mark.parametrize("seed", [1, 2])
def test_landmarks_stay_on_their_dots(name: str, seed: int) -> None:
    img, xy = dots()
    p = perturb(name, img, xy, MM, seed)
    assert p.image.dtype == np.float32 and p.image.min() >= 0 and p.image.max() <= 1
    assert p.xy.shape == xy.shape and p.spacing_mm > 0
    h, w = p.image.shape
    for x, y in p.xy:
        assert 0 <= x < w and 0 <= y < h
        ix, iy = int(round(x)), int(round(y))
        patch = p.image[max(iy - 1, 0) : iy + 2, max(ix - 1, 0) : ix + 2]
        if name in ("histogram", "contrast"):  # grey levels only: same landmarks, same order of values
            np.testing.assert_array_equal(p.xy, xy)
            shaded = (0.6 * img + np.linspace(0.05, 0.35, W, dtype=np.float32)[None]).astype(np.float32)
            q = perturb(name, shaded, xy, MM, seed)
            order = np.argsort(shaded.ravel(), kind="stable")
            assert (np.diff(q.image.ravel()[order]) >= -1e-6).all()
            assert np.abs(q.image - shaded).max() > 0.05
        else:
            assert patch.max() > 0.15, (name, x, y)  # blur spreads a 5-px dot to a peak of about 0.2


def test_geometric_perturbations_move_the_landmarks() -> None:
    img, xy = dots()
    assert not np.allclose(perturb("pose", img, xy, MM, 1).xy, xy)
    low = perturb("low_resolution", img, xy, MM, 1)
    assert low.spacing_mm == pytest.approx(0.25, rel=0.01) and low.image.shape[0] == 160
    assert perturb("tight_field", img, xy, 0.5, 1).image.shape[0] < H  # 15 mm = 30 px of margin


def test_perturbations_are_reproducible_and_do_not_touch_the_input() -> None:
    img, xy = dots()
    before = img.copy()
    a, b = perturb("noise", img, xy, MM, 7), perturb("noise", img, xy, MM, 7)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(img, before)


def test_unknown_perturbation_is_a_typed_error() -> None:
    img, xy = dots()
    with pytest.raises(InvalidArgumentError, match="unknown perturbation 'sepia'") as e:
        perturb("sepia", img, xy, MM, 0)
    assert isinstance(e.value, CephspineError) and isinstance(e.value, ValueError)
