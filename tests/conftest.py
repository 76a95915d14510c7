"""Shared test configuration."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


class Hung(BaseException):
    """Raised by :func:`no_hang` (a ``BaseException``, so that no ``except Exception`` in
    the code under test can swallow it)."""


@contextlib.contextmanager
def no_hang(seconds: float = 120.0) -> Iterator[None]:
    """Fail the body when it runs for more than ``seconds`` of wall time: a guard against
    hangs that, unlike a hypothesis ``deadline`` of a few seconds, does not fail an example
    that is merely slow on a loaded machine. A no-op outside the main thread."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def on_alarm(signum: int, frame: Any) -> None:
        raise Hung(f"still running after {seconds:g} s: a hang")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


DATA_VARIABLE = "CEPHSPINE_DATA"
"""The environment variable naming the folder of the training data (``isbi2015/``, ``aasce/``)."""


def shared_data_folder() -> Path:
    """Where the tests look for the training data: ``$CEPHSPINE_DATA``, else ``shared/data``
    beside the repository's folder."""
    given = os.environ.get(DATA_VARIABLE)
    if given:
        return Path(given).expanduser()
    return Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


SHARED_DATA = shared_data_folder()
NO_DATA_REASON = (
    f"training data not found at {SHARED_DATA}: set {DATA_VARIABLE} to the folder holding isbi2015/ and aasce/"
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared ISBI/AASCE training data (:func:`shared_data_folder`), or skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(NO_DATA_REASON)
    return SHARED_DATA.resolve()


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Mark every test that uses the training data (through the ``shared_data`` fixture) as
    ``shared_data``, so that ``-m shared_data`` and ``-m "not shared_data"`` select them all."""
    for item in items:
        if "shared_data" in getattr(item, "fixturenames", ()) and item.get_closest_marker("shared_data") is None:
            item.add_marker(pytest.mark.shared_data)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """One line saying how many tests the missing training data skipped, and how to run them."""
    skipped = terminalreporter.stats.get("skipped", [])
    n = sum(1 for r in skipped if isinstance(r.longrepr, tuple) and NO_DATA_REASON in str(r.longrepr[-1]))
    if n:
        terminalreporter.write_line(
            f"{n} test(s) skipped: they need the ISBI 2015 and AASCE training data, looked for at {SHARED_DATA}; "
            f"set {DATA_VARIABLE}=/path/to/data (holding isbi2015/ and aasce/) to run them (README: Tests)"
        )


# --- tiny two-stage models for the detector, CLI and training tests -------------------

TINY_CONFIG_KW: dict[str, object] = {
    "n_landmarks": 19,
    "coarse_pool": 4,
    "coarse_base": 4,
    "coarse_depth": 2,
    "pad_multiple": 16,  # coarse_pool * 2**coarse_depth
    "context_width": 8,
    "context_stride": 4,  # divides the coarse grid (a multiple of 2**coarse_depth)
    "patch": 32,
    "refine_base": 4,
    "refine_depth": 2,
}


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Keep tests light on a shared machine (and deterministic in timing)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_config():
    """A small :class:`StageConfig` whose networks run in milliseconds on a CPU."""
    from cephspine.pipeline import StageConfig

    return StageConfig(**TINY_CONFIG_KW)  # type: ignore[arg-type]


def tiny_card(cfg, **extra):
    """A complete model card for ``cfg`` (the 19 ISBI landmarks)."""
    from cephspine.anatomy import CEPH_LANDMARKS

    card = {
        "name": "tiny",
        "version": "0.0.1",
        "anatomy": "ceph",
        "landmarks": list(CEPH_LANDMARKS[: cfg.n_landmarks]),
        "config": cfg.to_dict(),
        "architecture": "tiny random-weight test model",
        "wrong_anatomy_threshold": 10.0,  # random weights: never reported as the wrong anatomy
    }
    card.update(extra)
    return card


def build_model_dir(out: Path, cfg, seed: int = 0, **card_extra) -> Path:
    """Write a random-weight model directory for ``cfg`` into ``out``."""
    import torch

    from cephspine.training.export import write_model_dir

    torch.manual_seed(seed)
    coarse, refine = cfg.build_coarse(), cfg.build_refine()
    return write_model_dir(out, coarse.state_dict(), refine.state_dict(), tiny_card(cfg, **card_extra))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, tiny_config) -> Path:
    """A random-weight model directory named ``tiny`` (read-only: copy it to alter it)."""
    return build_model_dir(tmp_path_factory.mktemp("weights") / "tiny", tiny_config)


@pytest.fixture(scope="session")
def make_model_dir(tiny_config):
    """Builder of random-weight model directories: ``make_model_dir(out, cfg=None, seed=0, **card)``."""

    def make(out: Path, cfg=None, seed: int = 0, **card_extra) -> Path:
        return build_model_dir(out, cfg or tiny_config, seed, **card_extra)

    return make


# --- a small DICOM radiograph for the identifier and privacy tests --------------------


def dicom_dataset(
    rows: int = 300,
    cols: int = 240,
    *,
    pixels: bytes | None = None,
    seed: int = 3,
    spacing_mm: float | None = 0.1,
    **attrs: object,
) -> Any:
    """A 12-bit DX DICOM dataset with random Pixel Data (skip without pydicom).

    ``pixels`` replaces the random Pixel Data (e.g. cut short, to make the file
    unreadable); ``spacing_mm=None`` leaves Pixel Spacing out; ``attrs`` are set last
    (identifiers such as ``PatientName="Doe^Jane"``, or overrides of any attribute).
    """
    pydicom = pytest.importorskip("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "DX", rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    if spacing_mm is not None:
        ds.PixelSpacing = [spacing_mm, spacing_mm]
    random = np.random.default_rng(seed).integers(0, 4095, (rows, cols)).astype(np.uint16).tobytes()
    ds.PixelData = random if pixels is None else pixels
    for key, value in attrs.items():
        setattr(ds, key, value)
    return ds


def write_dicom(path: Path, pixels: bytes | None = None, **identifiers: str) -> Path:
    """Write a 300 × 240 12-bit DX DICOM with 0.1 mm Pixel Spacing to ``path`` (skip without pydicom).

    ``identifiers`` are set as attributes (``PatientName="Doe^Jane"``); ``pixels`` replaces
    the default random Pixel Data (e.g. cut short, to make the file unreadable).
    """
    dicom_dataset(pixels=pixels, **identifiers).save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def det(tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A tiny detector whose ``predict`` calls are recorded in ``det.calls`` (file names)."""
    import cephspine

    d = cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")
    original = d.predict
    d.calls = []  # type: ignore[attr-defined]

    def counting(image: Any, **kw: Any) -> Any:
        d.calls.append(image.name)  # type: ignore[attr-defined]
        return original(image, **kw)

    monkeypatch.setattr(d, "predict", counting)
    return d
