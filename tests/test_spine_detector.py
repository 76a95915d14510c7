"""The spine path of the detector with a tiny random-weight 68-corner model: spacing-free
resampling, the per-vertebra views and the anatomical sanity flags."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import cephspine
from cephspine.anatomy import SPINE_LANDMARKS
from cephspine.errors import AnatomyWarning, SpacingWarning
from cephspine.pipeline import StageConfig
from tests.conftest import TINY_CONFIG_KW, build_model_dir

SPINE_TINY = StageConfig(
    **(TINY_CONFIG_KW | {"n_landmarks": 68, "fine_height_px": 128, "context_kernel": (5, 3)})  # type: ignore[arg-type]
)


@pytest.fixture(scope="module")
def spine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model_dir(
        tmp_path_factory.mktemp("w") / "tinyspine",
        SPINE_TINY,
        anatomy="spine",
        landmarks=list(SPINE_LANDMARKS),
        detect_facing=False,
    )


def test_spacing_free_model_needs_no_spacing(spine_dir: Path) -> None:
    det = cephspine.Detector.from_pretrained(spine_dir, device="cpu")
    img = np.random.default_rng(0).uniform(0, 1, (700, 260)).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pred = det.predict(img)
    assert not any(issubclass(w.category, SpacingWarning) for w in caught)
    assert pred.xy_px.shape == (68, 2) and pred.xy_mm is None
    assert ((pred.xy_px >= 0) & (pred.xy_px <= [259, 699])).all()
    assert pred.by_vertebra().shape == (17, 4, 2)
    df = pred.vertebra_dataframe()
    assert list(df["vertebra"][:5]) == ["T1"] * 4 + ["T2"]
    assert list(df["corner"][:4]) == ["TL", "TR", "BL", "BR"]


def test_vertebra_refinement_model_loads_and_predicts(tmp_path: Path) -> None:
    """A model whose refinement places each vertebra's four corners from one patch."""
    import dataclasses

    cfg = dataclasses.replace(SPINE_TINY, coarse_target="vertebrae", refine_target="vertebrae")
    d = build_model_dir(tmp_path / "vr", cfg, anatomy="spine", landmarks=list(SPINE_LANDMARKS), detect_facing=False)
    det = cephspine.Detector.from_pretrained(d, device="cpu")
    assert det.config.refine_outputs == 4
    img = np.random.default_rng(2).uniform(0, 1, (700, 260)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = det.predict(img)
    assert pred.xy_px.shape == (68, 2) and np.isfinite(pred.xy_px).all()
    assert pred.confidence.shape == (68,) and len(pred.meta["features"]["refine_peak"]) == 68


def test_same_image_at_two_sizes_gives_the_same_relative_points(spine_dir: Path) -> None:
    """Resampling to a fixed height: a 2x larger copy gives the same points, scaled."""
    det = cephspine.Detector.from_pretrained(spine_dir, device="cpu")
    rng = np.random.default_rng(1)
    small = rng.uniform(0, 1, (300, 120)).astype(np.float32)
    big = np.kron(small, np.ones((2, 2), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = det.predict(small), det.predict(big)
    np.testing.assert_allclose((b.xy_px + 0.5) / 2 - 0.5, a.xy_px, atol=1.0)


def test_implausible_vertebrae_are_flagged(spine_dir: Path) -> None:
    det = cephspine.Detector.from_pretrained(spine_dir, device="cpu")
    quads = np.array([[[10, 10 * v], [30, 10 * v], [10, 10 * v + 8], [30, 10 * v + 8]] for v in range(17)], float)
    xy = quads.reshape(68, 2)
    conf = np.full(68, 0.9)
    msgs: list[str] = []
    assert np.array_equal(det._spine_sanity(xy, conf, "x.png", msgs), conf) and not msgs
    bad = xy.copy()
    bad[[4, 5]] = bad[[5, 4]]  # T2: TL and TR swapped
    bad[[60, 61, 62, 63, 64, 65, 66, 67]] = bad[[64, 65, 66, 67, 60, 61, 62, 63]]  # L4 and L5 swapped
    with pytest.warns(AnatomyWarning, match="T2"):
        out = det._spine_sanity(bad, conf, "x.png", msgs)
    flagged = out.reshape(17, 4).min(axis=1) < 0.3
    assert flagged[1] and flagged[15] and flagged[16]
    assert not flagged[5]
    assert msgs and "x.png" in msgs[0]


def test_by_vertebra_refuses_ceph_predictions(tiny_model_dir: Path) -> None:
    det = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = det.predict(np.random.default_rng(0).uniform(0, 1, (120, 100)).astype(np.float32), spacing=0.5)
    with pytest.raises(ValueError, match="68 spine corners"):
        pred.by_vertebra()


def test_chain_doubt_finds_missing_and_ambiguous_ends() -> None:
    from cephspine.vertebrae import LevelRules, chain_doubt

    rules = LevelRules(found_min_prob=0.2, ambiguous_ratio=0.5, doubt_confidence=0.6)
    p = np.full(17, 0.9)
    assert not chain_doubt(p, above=0.1, below=0.1, rules=rules).any
    d = chain_doubt(p, above=0.5, below=0.1, rules=rules)
    assert d.ambiguous_top and not d.ambiguous_bottom and d.missing == ()
    p[[0, 1, 8]] = 0.05  # T1, T2 and T9 placeholders; no peak above T1 is compared with a placeholder
    d = chain_doubt(p, above=0.8, below=0.8, rules=rules)
    assert (d.missing, d.ambiguous_top, d.ambiguous_bottom) == ((0, 1, 8), False, True)
    off = LevelRules(found_min_prob=0.2, ambiguous_ratio=None, doubt_confidence=0.6)
    assert not chain_doubt(np.full(17, 0.9), 0.9, 0.9, off).any
    assert LevelRules.from_dict(off.to_dict()) == off
    with pytest.raises(ValueError, match="invalid level rules"):
        LevelRules(found_min_prob=0.2, ambiguous_ratio=0.5, doubt_confidence=1.5)


def test_a_chain_that_cannot_be_trusted_warns_and_lowers_confidence(tmp_path: Path) -> None:
    """With ``levels`` rules in the card, vertebrae not found get a low confidence and a
    doubtful chain's confidences are scaled, with a LevelWarning naming the vertebrae."""
    import dataclasses
    import json

    from cephspine.errors import LevelWarning

    cfg = dataclasses.replace(SPINE_TINY, coarse_target="vertebrae", refine_target="vertebrae")
    d = build_model_dir(tmp_path / "lv", cfg, anatomy="spine", landmarks=list(SPINE_LANDMARKS), detect_facing=False)
    card = json.loads((d / "card.json").read_text())
    card["levels"] = {"found_min_prob": 0.5, "ambiguous_ratio": 0.5, "doubt_confidence": 0.5}
    (d / "card.json").write_text(json.dumps(card))
    det = cephspine.Detector.from_pretrained(d, device="cpu")
    peak = np.repeat(np.r_[[0.1, 0.2], np.full(15, 0.9)], 4)
    conf = np.full(68, 0.8)
    msgs: list[str] = []
    with pytest.warns(LevelWarning, match="T1, T2 not found in the film"):
        out = det._spine_levels(peak, {"above": 0.0, "below": 0.0}, conf, "s.png", msgs)
    np.testing.assert_allclose(out, np.r_[np.full(8, 0.15), np.full(60, 0.4)])
    assert msgs[0].startswith("s.png: ") and "may be shifted" in msgs[0]
    peak = np.full(68, 0.9)
    with pytest.warns(LevelWarning, match="below L5 is almost as strong"):
        out = det._spine_levels(peak, {"above": 0.1, "below": 0.6}, conf, "s.png", msgs)
    np.testing.assert_allclose(out, 0.4)
    assert det._spine_levels(peak, {"above": 0.1, "below": 0.1}, conf, "s.png", msgs) is conf
    img = np.random.default_rng(3).uniform(0, 1, (700, 260)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = det.predict(img)  # random weights: weak peaks everywhere, so the rules fire
    assert "beyond_ends" in pred.meta["decoding"]
    assert any("vertebra levels uncertain" in w for w in pred.warnings)


def test_wrong_anatomy_is_judged_on_confidences_before_level_doubts(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A doubtful chain's lowered confidences must not make a spine film look like another
    anatomy: the wrong-anatomy score was fitted on the confidences before that scaling."""
    import dataclasses
    import json

    import cephspine.detector as detector_module

    cfg = dataclasses.replace(SPINE_TINY, coarse_target="vertebrae", refine_target="vertebrae")
    d = build_model_dir(tmp_path / "wa", cfg, anatomy="spine", landmarks=list(SPINE_LANDMARKS), detect_facing=False)
    card = json.loads((d / "card.json").read_text())
    card["levels"] = {"found_min_prob": 0.0, "ambiguous_ratio": None, "doubt_confidence": 0.5}
    (d / "card.json").write_text(json.dumps(card))
    det = cephspine.Detector.from_pretrained(d, device="cpu")
    seen: list[np.ndarray] = []
    real_check = detector_module.check_anatomy

    def recording_check(anatomy, names, xy, conf, *args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(np.array(conf, copy=True))
        return real_check(anatomy, names, xy, conf, *args, **kwargs)

    monkeypatch.setattr(detector_module, "check_anatomy", recording_check)
    monkeypatch.setattr(type(det), "_spine_levels", lambda self, p, e, conf, n, m: np.zeros_like(conf))
    img = np.random.default_rng(4).uniform(0, 1, (700, 260)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = det.predict(img)
    assert np.all(pred.confidence == 0.0)
    assert len(seen) == 1 and np.any(seen[0] > 0.0)
