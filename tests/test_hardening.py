"""Inputs, model folders and outputs that a careless or hostile user hands the SDK: each
probe that is about memory runs in its own process under an address-space cap."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cephspine
from cephspine.errors import (
    CephspineError,
    CohortIncompleteWarning,
    ImageReadError,
    ModelLoadError,
    SpacingError,
    UnknownModelError,
)
from cephspine.registry import CARD_FILE, WEIGHTS_FILE, resolve

ROOT = Path(__file__).resolve().parents[1]
TORCH_OOM = (
    "[enforce fail at alloc_cpu.cpp:118] data. DefaultCPUAllocator: can't allocate memory: you tried to "
    "allocate 5242880000 bytes. Error code 12 (Cannot allocate memory)"
)


def run_capped(code: str, cap_gib: float, timeout: float = 240, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh Python whose address space is capped at ``cap_gib`` GiB
    (skipped with a CUDA build of torch, whose import alone reserves more address space)."""
    import torch

    if torch.version.cuda:
        pytest.skip("address-space caps are for CPU builds of torch")
    prelude = textwrap.dedent(
        f"""
        import resource
        cap = int({cap_gib} * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


# --- 1. memory from small files ---------------------------------------------------------


def _explicit_le(tag: int, vr: bytes, value: bytes) -> bytes:
    group, elem = tag >> 16, tag & 0xFFFF
    head = group.to_bytes(2, "little") + elem.to_bytes(2, "little") + vr
    if vr in (b"OB", b"OW", b"UN", b"SQ", b"UT", b"UC", b"UR"):
        return head + b"\0\0" + len(value).to_bytes(4, "little") + value
    return head + len(value).to_bytes(2, "little") + value


def _even(b: bytes, pad: bytes = b" ") -> bytes:
    return b if len(b) % 2 == 0 else b + pad


def deflated_dicom(path: Path, rows: int, cols: int) -> Path:
    """A Deflated Explicit VR Little Endian DICOM whose zero pixel data is ``rows × cols``
    16-bit pixels, written in streamed chunks (the file is small; its data set is not)."""
    ts = _even(b"1.2.840.10008.1.2.1.99", b"\0")
    meta_elems = (
        _explicit_le(0x00020001, b"OB", b"\0\1")
        + _explicit_le(0x00020002, b"UI", _even(b"1.2.840.10008.5.1.4.1.1.1.1", b"\0"))
        + _explicit_le(0x00020003, b"UI", _even(b"1.2.3.4.5", b"\0"))
        + _explicit_le(0x00020010, b"UI", ts)
    )
    meta = _explicit_le(0x00020000, b"UL", len(meta_elems).to_bytes(4, "little")) + meta_elems
    us = lambda v: v.to_bytes(2, "little")  # noqa: E731
    body = (
        _explicit_le(0x00080016, b"UI", _even(b"1.2.840.10008.5.1.4.1.1.1.1", b"\0"))
        + _explicit_le(0x00080018, b"UI", _even(b"1.2.3.4.5", b"\0"))
        + _explicit_le(0x00080060, b"CS", b"DX")
        + _explicit_le(0x00280002, b"US", us(1))
        + _explicit_le(0x00280004, b"CS", b"MONOCHROME2 ")
        + _explicit_le(0x00280010, b"US", us(rows))
        + _explicit_le(0x00280011, b"US", us(cols))
        + _explicit_le(0x00280100, b"US", us(16))
        + _explicit_le(0x00280101, b"US", us(12))
        + _explicit_le(0x00280102, b"US", us(11))
        + _explicit_le(0x00280103, b"US", us(0))
    )
    n = rows * cols * 2
    pixel_head = (0x7FE0).to_bytes(2, "little") + (0x0010).to_bytes(2, "little") + b"OW\0\0" + n.to_bytes(4, "little")
    comp = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    zeros = bytes(1 << 24)
    with open(path, "wb") as f:
        f.write(b"\0" * 128 + b"DICM" + meta)
        f.write(comp.compress(body + pixel_head))
        left = n
        while left:
            k = min(left, len(zeros))
            f.write(comp.compress(zeros[:k]))
            left -= k
        f.write(comp.flush())
    return path


def test_deflated_dicom_that_inflates_to_gigabytes_is_refused_from_a_bounded_read(tmp_path: Path) -> None:
    pytest.importorskip("pydicom")
    path = deflated_dicom(tmp_path / "bomb.dcm", 30_000, 30_000)  # 1.8 GB of pixels in ~8 MB
    assert path.stat().st_size < 16 * 2**20
    r = run_capped(
        f"""
        from cephspine.io import load_image
        from cephspine.errors import ImageReadError
        try:
            load_image({str(path)!r})
        except ImageReadError as e:
            print("REFUSED", e)
        """,
        cap_gib=1.5,
    )
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "bomb.dcm" in r.stdout and "MiB" in r.stdout
    # a cohort's identifier scrubber reads the same file: it must not inflate it either
    r = run_capped(
        f"""
        import resource
        from cephspine.analysis import read_identifiers
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print("IDENTIFIERS", read_identifiers({str(path)!r}))
        print("GROWTH_MB", (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
        """,
        cap_gib=8,
    )
    assert r.returncode == 0, r.stderr
    assert "IDENTIFIERS {}" in r.stdout
    assert int(r.stdout.split("GROWTH_MB")[1]) < 200, r.stdout


def test_dicom_header_with_an_absurd_area_is_refused_before_decoding(tmp_path: Path) -> None:
    from tests.conftest import dicom_dataset

    ds = dicom_dataset(16, 16)
    ds.Rows, ds.Columns = 30_000, 30_000  # sides within the limit, area far above it
    ds.save_as(tmp_path / "big.dcm", enforce_file_format=True)
    with pytest.raises(ImageReadError, match="million pixels") as info:
        cephspine.load_image(tmp_path / "big.dcm")
    assert "big.dcm" in str(info.value)


def test_memory_error_while_decoding_is_out_of_memory_not_a_corrupt_file(tmp_path: Path, monkeypatch) -> None:
    from tests.conftest import write_dicom

    path = write_dicom(tmp_path / "a.dcm")

    def boom(self: Any) -> Any:
        raise MemoryError

    import pydicom

    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(boom))
    with pytest.raises(MemoryError):
        cephspine.load_image(path)


def test_a_plausible_spacing_whose_fine_grid_is_enormous_is_refused_before_resampling() -> None:
    r = run_capped(
        """
        import numpy as np, cephspine
        from cephspine.errors import SpacingError
        det = cephspine.Detector.from_pretrained("ceph", device="cpu")
        img = np.ones((3000, 3000), np.float32)  # at 1 mm: a 3 m film, a 15000 x 15000 fine grid
        try:
            det.predict(img, spacing=1.0)
        except SpacingError as e:
            print("REFUSED", e)
        """,
        cap_gib=4,
    )
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "million px" in r.stdout


def test_spacing_outside_the_range_of_radiographs_is_a_spacing_error(tmp_path: Path) -> None:
    from cephspine.cli import main  # noqa: F401 - the CLI is tested through its entry point below

    img = np.ones((600, 483), np.float32)
    for bad in (5.3, 1e-9):
        with pytest.raises(SpacingError, match="outside the range of radiographs"):
            cephspine.load_image(img, spacing=bad)
        with pytest.raises(SpacingError, match="outside the range"):
            cephspine.analyze(img, spacing=bad)
    r = subprocess.run(
        [sys.executable, "-m", "cephspine", "analyze", str(cephspine.example_path()), "--spacing", "1e-9"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert r.returncode == 1 and "outside the range of radiographs" in r.stderr


def test_dicom_pixel_spacing_outside_the_range_is_ignored_with_a_warning(tmp_path: Path) -> None:
    from tests.conftest import dicom_dataset

    ds = dicom_dataset(64, 64)
    ds.PixelSpacing = [5.3, 5.3]
    ds.save_as(tmp_path / "s.dcm", enforce_file_format=True)
    with pytest.warns(cephspine.SpacingWarning, match="outside the range"):
        rg = cephspine.load_image(tmp_path / "s.dcm")
    assert rg.spacing is None


def test_extreme_aspect_ratio_on_a_fixed_height_model_is_refused() -> None:
    r = run_capped(
        """
        import warnings
        import numpy as np, cephspine
        from cephspine.errors import ImageReadError
        warnings.simplefilter("ignore")
        det = cephspine.Detector.from_pretrained("spine", device="cpu")
        try:  # 1024 px high, this film would be 1.3 million px wide
            det.predict(np.ones((16, 20_000), np.float32))
        except ImageReadError as e:
            print("REFUSED", e)
        """,
        cap_gib=4,
    )
    assert r.returncode == 0, r.stderr
    assert "REFUSED" in r.stdout and "is it a radiograph" in r.stdout


def load_capped(model_dir: Path, timeout: float = 240) -> str:
    """The output of ``Detector.from_pretrained(model_dir)`` in a process capped at 3 GiB
    (``REFUSED <message>`` for a :class:`ModelLoadError`); the process must exit cleanly."""
    r = run_capped(
        f"""
        import cephspine
        from cephspine.errors import ModelLoadError
        try:
            cephspine.Detector.from_pretrained({str(model_dir)!r}, device="cpu")
        except ModelLoadError as e:
            print("REFUSED", e)
        """,
        cap_gib=3,
        timeout=timeout,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def _model_copy(src: Path, dst: Path, **config: Any) -> Path:
    shutil.copytree(src, dst)
    card = json.loads((dst / CARD_FILE).read_text())
    card["config"] |= config
    (dst / CARD_FILE).write_text(json.dumps(card))
    return dst


def test_card_with_huge_networks_is_refused_before_building_them(tiny_model_dir: Path, tmp_path: Path) -> None:
    out_of_range = _model_copy(tiny_model_dir, tmp_path / "a", coarse_base=4096)
    # within the ranges, but networks of gigabytes: refused from the weights' header alone
    big = _model_copy(tiny_model_dir, tmp_path / "b", coarse_base=128, coarse_depth=6, pad_multiple=256)
    for d, expected in ((out_of_range, "coarse_base must be a whole number"), (big, "weights do not match")):
        out = load_capped(d)
        assert "REFUSED" in out and expected in out


@pytest.mark.parametrize("kind", ["dev_zero", "fifo", "huge"])
def test_card_that_is_not_a_small_regular_file_is_refused_at_once(
    tiny_model_dir: Path, tmp_path: Path, kind: str
) -> None:
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (d / CARD_FILE).unlink()
    if kind == "dev_zero":
        os.symlink("/dev/zero", d / CARD_FILE)
    elif kind == "fifo":
        os.mkfifo(d / CARD_FILE)
    else:
        (d / CARD_FILE).write_bytes(b" " * (5 * 2**20))
    out = load_capped(d, timeout=60)
    assert "REFUSED" in out and CARD_FILE in out


def test_torch_allocator_failure_is_out_of_memory(tmp_path: Path, det: Any, monkeypatch) -> None:
    from cephspine.errors import is_out_of_memory

    assert is_out_of_memory(RuntimeError(TORCH_OOM)) and is_out_of_memory(MemoryError())
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    from PIL import Image

    for i in range(3):
        Image.fromarray(np.full((180, 200), 40 * i + 20, np.uint8)).save(tmp_path / f"img{i}.png")

    import cephspine.detector as detector_module

    original = detector_module.Detector._predict_unguarded

    def fails_on_img1(self: Any, rg: Any, timings: Any) -> Any:
        if rg.name == "img1.png":
            raise RuntimeError(TORCH_OOM)
        return original(self, rg, timings)

    monkeypatch.setattr(detector_module.Detector, "_predict_unguarded", fails_on_img1)
    with pytest.raises(MemoryError, match="img1.png: out of memory"):
        det.predict(cephspine.load_image(tmp_path / "img1.png", spacing=0.1))
    with pytest.warns(CohortIncompleteWarning, match="img1.png"):
        df = cephspine.cohort(tmp_path, detector=det, spacing=0.1, progress=False)
    assert sorted(df["image"]) == ["img0.png", "img2.png"]  # no error row for the machine's failure


# --- 3. a shipped name is never a local folder -------------------------------------------


def test_local_folder_named_like_a_shipped_model_does_not_replace_it(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("CEPHSPINE_WEIGHTS", raising=False)
    shutil.copytree(tiny_model_dir, tmp_path / "ceph")  # a complete model folder called "ceph"
    monkeypatch.chdir(tmp_path)
    det = cephspine.Detector.from_pretrained("ceph", device="cpu")
    assert (det.name, det.version) == ("ceph", "0.2.0")
    assert resolve("./ceph") == Path("./ceph")  # a path is a path
    assert cephspine.Detector.from_pretrained("./ceph", device="cpu").name == "tiny"
    monkeypatch.setenv("CEPHSPINE_WEIGHTS", str(tmp_path))  # not even through the environment
    assert resolve("ceph") == cephspine.registry.WEIGHTS_DIR / "ceph"
    monkeypatch.delenv("CEPHSPINE_WEIGHTS")
    shutil.copytree(tiny_model_dir, tmp_path / "mine")
    with pytest.raises(UnknownModelError, match=r"give it as a path \(\./mine\)"):
        cephspine.Detector.from_pretrained("mine", device="cpu")
    from PIL import Image

    (tmp_path / "in").mkdir()
    Image.fromarray(np.full((180, 200), 90, np.uint8)).save(tmp_path / "in" / "a.png")
    df = cephspine.cohort(tmp_path / "in", model=Path("mine"), spacing=0.1, progress=False, device="cpu")
    assert list(df["model"]) == ["tiny"]  # a Path is a path, never the name of a model
    r = subprocess.run(
        [sys.executable, "-m", "cephspine", "models"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        env={k: v for k, v in os.environ.items() if k != "CEPHSPINE_WEIGHTS"},
    )
    assert r.returncode == 0, r.stderr
    lines = dict(line.split("\t")[:2] for line in r.stdout.splitlines())
    assert lines["ceph"] == "0.2.0" and "tiny" not in r.stdout


# --- 5. no pickle from a place others can write -------------------------------------------


class _Planted:
    def __reduce__(self) -> Any:
        return (os.system, ("touch PLANTED",))


def test_training_caches_and_checkpoints_never_unpickle_code(tmp_path: Path, monkeypatch) -> None:
    import torch

    from cephspine.pipeline import StageConfig
    from cephspine.training.ceph import _start, load_cached, read_cache

    monkeypatch.chdir(tmp_path)
    torch.save({"key": "k", "evil": _Planted()}, tmp_path / "cache.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        read_cache(tmp_path / "cache.pt")
    assert load_cached(tmp_path / "cache.pt", "k") is None  # not read: the cache is built again
    torch.save({"net": {}, "evil": _Planted()}, tmp_path / "coarse_ckpt.pt")
    with pytest.raises(RuntimeError, match="coarse_ckpt.pt.*delete it"):
        _start(tmp_path / "coarse_ckpt.pt", StageConfig(n_landmarks=2).build_refine, 1e-3, 0, "epoch")
    assert not (tmp_path / "PLANTED").exists()


def test_cross_validation_cache_lives_in_a_private_folder(tmp_path: Path, monkeypatch) -> None:
    from cephspine.training import ceph_cv

    seen: dict[str, Any] = {}

    def fake_prepare(data: Path, cache_file: Path, ids: list[str], cfg: Any = None) -> None:
        seen["cache"] = cache_file
        seen["mode"] = cache_file.parent.stat().st_mode & 0o777
        raise SystemExit("stop after preparing")

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(ceph_cv, "prepare_cache", fake_prepare)
    with pytest.raises(SystemExit):
        ceph_cv.train_all(tmp_path / "data", tmp_path / "out", 1.0, ["fold0"])
    cache = seen["cache"]
    assert cache.name == "cache.pt" and f"cephspine_cv_cache_{os.getpid()}" not in str(cache)
    assert seen["mode"] == 0o700 and cache.parent != tmp_path
    assert not cache.parent.exists()  # removed afterwards


# --- 7. a model card validated field by field ----------------------------------------------


def _card_copy(src: Path, dst: Path, edit: Any) -> Path:
    shutil.copytree(src, dst)
    card = json.loads((dst / CARD_FILE).read_text())
    edit(card)
    (dst / CARD_FILE).write_text(json.dumps(card, allow_nan=True))
    return dst


BAD_CARDS = {
    "confidence junk": lambda c: c.update(confidence="junk"),
    "confidence coef": lambda c: c.update(confidence={"coef": [1, 2], "radius_mm": 2}),
    "confidence NaN": lambda c: c.update(confidence={"coef": [float("nan")] * 4, "radius_mm": 2}),
    "fine_mm NaN": lambda c: c["config"].update(fine_mm=float("nan")),
    "fine_mm 0": lambda c: c["config"].update(fine_mm=0),
    "fine_mm text": lambda c: c["config"].update(fine_mm="0.2"),
    "depth bool": lambda c: c["config"].update(coarse_depth=True),
    "pad": lambda c: c["config"].update(pad_multiple=24),
    "landmarks": lambda c: c.update(landmarks=[1] * len(c["landmarks"])),
    "duplicate names": lambda c: c.update(landmarks=["a"] * len(c["landmarks"])),
    "name": lambda c: c.update(name={"x": 1}),
    "registration": lambda c: c.update(registration=[1]),
    "facing": lambda c: c.update(facing={"skip_mirror_at_mean_coarse_peak": "x"}),
    "levels": lambda c: c.update(levels={"found_min_prob": 0.2}),
    "metrics": lambda c: c.update(metrics={"mre_mm": "junk"}),
    "spacing": lambda c: c.update(training_spacing_mm=0),
}


@pytest.mark.parametrize("case", sorted(BAD_CARDS))
def test_invalid_card_entries_are_model_load_errors(tiny_model_dir: Path, tmp_path: Path, case: str) -> None:
    d = _card_copy(tiny_model_dir, tmp_path / "m", BAD_CARDS[case])
    with pytest.raises(ModelLoadError) as info:
        cephspine.Detector.from_pretrained(d, device="cpu")
    assert str(d / CARD_FILE) in str(info.value)


def test_deeply_nested_card_is_a_model_load_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (d / CARD_FILE).write_text('{"name": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ModelLoadError, match="unreadable model card"):
        cephspine.Detector.from_pretrained(d, device="cpu")


def test_tensor_without_a_stage_prefix_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    d = shutil.copytree(tiny_model_dir, tmp_path / "m")
    tensors = load_file(str(d / WEIGHTS_FILE))
    save_file(tensors | {"extra": next(iter(tensors.values())).clone()}, str(d / WEIGHTS_FILE))
    with pytest.raises(ModelLoadError, match="without a stage prefix"):
        cephspine.Detector.from_pretrained(d, device="cpu")


# --- 9. what a cohort folder may hold --------------------------------------------------------


def test_cohort_gives_fifos_devices_and_link_loops_error_rows(tmp_path: Path, det: Any) -> None:
    from PIL import Image

    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(np.full((180, 200), 90, np.uint8)).save(folder / "good.png")
    os.mkfifo(folder / "pipe.png")
    os.symlink("/dev/zero", folder / "zero.png")
    os.symlink(folder / "loop_b.png", folder / "loop_a.png")
    os.symlink(folder / "loop_a.png", folder / "loop_b.png")
    os.symlink(folder / "missing.png", folder / "dangling.png")
    (folder / "sub").mkdir()  # folders are not images
    df = cephspine.cohort(folder, detector=det, spacing=0.1, progress=False).set_index("image")
    assert sorted(df.index) == ["dangling.png", "good.png", "loop_a.png", "loop_b.png", "pipe.png", "zero.png"]
    assert df.loc["good.png", "status"] == "ok"
    assert df.loc["pipe.png", "error"].endswith("not a regular file (a FIFO, device or socket), refused")
    assert "not a regular file" in df.loc["zero.png", "error"]
    assert "symbolic link loop" in df.loc["loop_a.png", "error"]
    assert "file not found" in df.loc["dangling.png", "error"]


def test_every_public_load_error_is_a_cephspine_error(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A sample of hostile cards through hypothesis-free edge values (the fuzz test is below)."""
    d = _card_copy(tiny_model_dir, tmp_path / "m", lambda c: c["config"].update(context_kernel=[3, "x"]))
    with pytest.raises(CephspineError):
        cephspine.Detector.from_pretrained(d, device="cpu")


# --- fuzzing the model card --------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_JSON_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**40), 2**40)
    | st.sampled_from([0, 1, -1, 2**31, 10**9, 4096, 40])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
_JSON = st.recursive(
    _JSON_LEAVES, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=12
)
_CARD_KEYS = ("name", "version", "anatomy", "landmarks", "config", "architecture", "confidence", "registration",
              "facing", "levels", "metrics", "training_spacing_mm", "detect_facing", "status",
              "status_note")  # fmt: skip
_CONFIG_KEYS = ("n_landmarks", "fine_mm", "coarse_pool", "pad_multiple", "sigma_px", "coarse_base", "coarse_depth",
                "context_width", "context_stride", "context_kernel", "patch", "refine_base", "refine_depth",
                "fine_height_px", "min_width_px", "coarse_target", "refine_target", "refine_flip", "end_prior",
                "unknown_key")  # fmt: skip
_EDITS = st.lists(
    st.tuples(st.booleans(), st.sampled_from(_CARD_KEYS + _CONFIG_KEYS), st.one_of(st.just("<delete>"), _JSON)),
    min_size=1,
    max_size=3,
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_EDITS)
def test_fuzzed_model_cards_load_or_raise_a_cephspine_error(tiny_model_dir: Path, tmp_path: Path, edits: Any) -> None:
    card = json.loads((tiny_model_dir / CARD_FILE).read_text())
    for in_config, key, value in edits:
        target = card["config"] if in_config and key in _CONFIG_KEYS and isinstance(card.get("config"), dict) else card
        if value == "<delete>":
            target.pop(key, None)
        else:
            target[key] = value
    d = tmp_path / "fuzz"
    if not d.exists():
        shutil.copytree(tiny_model_dir, d)
    (d / CARD_FILE).write_text(json.dumps(card, allow_nan=True))
    try:
        det = cephspine.Detector.from_pretrained(d, device="cpu")
    except CephspineError as exc:
        assert str(d) in str(exc)
        return
    import warnings

    with warnings.catch_warnings(), contextlib.suppress(CephspineError):
        warnings.simplefilter("ignore")
        det.predict(np.full((120, 100), 0.5, np.float32), spacing=0.2)


# --- 10. hang guards that a loaded machine does not trip ------------------------------------


def test_no_hang_fails_a_hang_even_inside_except_exception() -> None:
    import time

    from tests.conftest import Hung, no_hang

    def swallowing() -> None:
        with contextlib.suppress(Exception):  # the code under test may catch everything ordinary
            time.sleep(5)

    t0 = time.monotonic()
    with pytest.raises(Hung), no_hang(0.2):
        swallowing()
    assert time.monotonic() - t0 < 4
    with no_hang(5):  # a body that ends in time is left alone, and the alarm is disarmed after
        time.sleep(0.01)
    time.sleep(0.1)


def test_resuming_a_table_keyed_by_an_older_version_is_refused_not_duplicated(
    tmp_path: Path, det: Any, monkeypatch
) -> None:
    from PIL import Image

    import cephspine.cohorts as cohorts_module
    import cephspine.cohorts.image as image_module
    from cephspine.cohorts.columns import one_line
    from cephspine.errors import CohortSettingsError

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("new\nline.png", "plain.png"):
        Image.fromarray(np.full((180, 200), 90, np.uint8)).save(folder / name)

    def old_key(path: Any, root: Any = None) -> str:  # how older versions keyed an image
        p = Path(path)
        return one_line(p.name if root is None else p.relative_to(Path(root)).as_posix())

    with monkeypatch.context() as m:
        m.setattr(cohorts_module, "image_key", old_key)
        m.setattr(image_module, "image_key", old_key)
        old = cephspine.cohort(folder, detector=det, out=tmp_path / "o.csv", spacing=0.1, progress=False)
    assert sorted(old["image"]) == ["new line.png", "plain.png"]
    with pytest.raises(CohortSettingsError, match="keyed by an older version.*'new line.png'"):
        cephspine.cohort(folder, detector=det, out=tmp_path / "o.csv", spacing=0.1, progress=False)
    new = cephspine.cohort(folder, detector=det, out=tmp_path / "new.csv", spacing=0.1, progress=False)
    assert sorted(new["image"]) == ["new\\nline.png", "plain.png"]
