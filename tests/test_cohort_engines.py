"""Cohort engines: threads sharing one model in-process, and Ray actors on a real local Ray
(one cluster for the module): results equal to the local engine's, a worker killed mid-run
costs no image, and an image whose workers keep dying gets no row (a resumed run analyses it)."""

from __future__ import annotations

import logging
import os
import signal
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import cephspine
from cephspine.cohorts import CohortWriter, cohort, engines
from cephspine.errors import CohortIncompleteWarning

ROOT = Path(__file__).resolve().parents[1]
CONTROL = "CEPHSPINE_TEST_RAY_CONTROL"


def _folder(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        p = folder / f"img{i:02d}.png"
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (180 + 7 * i, 150), dtype=np.uint8)).save(p)
        out.append(p)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    return out


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["warnings", "n_warnings"]).sort_values("image").reset_index(drop=True)


@pytest.fixture
def det(tiny_model_dir: Path) -> Any:
    return cephspine.Detector.from_pretrained(tiny_model_dir, device="cpu")


def _worker_setup() -> None:
    """Runs in every worker process of the test cluster: each image takes at least the
    seconds in ``<control>/delay``, and while ``<control>/poison`` exists an image named
    ``poison.png`` kills the worker process analysing it (SIGKILL, as the OOM killer does)."""
    from cephspine.detector import Detector

    control = Path(os.environ[CONTROL])
    predict = Detector.predict

    def controlled(self: Any, image: Any, **kw: Any) -> Any:
        if getattr(image, "name", "") == "poison.png" and (control / "poison").exists():
            os.kill(os.getpid(), signal.SIGKILL)
        delay = control / "delay"
        time.sleep(float(delay.read_text()) if delay.exists() else 0.0)
        return predict(self, image, **kw)

    Detector.predict = controlled  # type: ignore[method-assign]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    ray = pytest.importorskip("ray")
    control = tmp_path_factory.mktemp("ray-control")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        runtime_env={
            "worker_process_setup_hook": f"{__name__}._worker_setup",
            "env_vars": {CONTROL: str(control), "PYTHONPATH": path},
        },
    )
    try:
        yield ray, control
    finally:
        ray.shutdown()


def test_threads_give_the_same_table_and_each_image_its_own_warnings(tmp_path: Path, det: Any) -> None:
    _folder(tmp_path / "in", 6)
    original = det._predict_radiograph

    def slow_and_chatty(rg: Any, timings: Any) -> Any:
        warnings.warn(f"{rg.name}: note about this very image", stacklevel=2)
        time.sleep(0.05 if rg.name.endswith(("1.png", "3.png")) else 0.0)  # interleave the threads
        return original(rg, timings)

    det._predict_radiograph = slow_and_chatty
    one = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False)
    two = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False, workers=3, out=tmp_path / "o.csv")
    assert list(two["image"]) == list(one["image"])  # input order
    pd.testing.assert_frame_equal(_comparable(one), _comparable(two))
    for _, row in two[two["status"] == "ok"].iterrows():
        notes = [w for w in row["warnings"].split(" | ") if "note about" in w]
        assert notes == [f"{row['image']}: note about this very image"]
    assert (two["status"] == "error").sum() == 1
    assert len(pd.read_csv(tmp_path / "o.csv")) == 7


def test_model_option_loads_that_model(tmp_path: Path, tiny_model_dir: Path) -> None:
    _folder(tmp_path / "in", 2)
    df = cohort(tmp_path / "in", model=tiny_model_dir, device="cpu", spacing=0.1, progress=False)
    assert set(df["model"].dropna()) >= {"tiny"} and (df["status"] == "ok").sum() == 2


def test_ray_engine_matches_the_local_engine(
    tmp_path: Path, det: Any, tiny_model_dir: Path, cluster: tuple[Any, Path]
) -> None:
    _folder(tmp_path / "in", 5)
    local = cohort(tmp_path / "in", detector=det, spacing=0.1, progress=False)
    far = cohort(
        tmp_path / "in",
        engine="ray",
        workers=2,
        model=tiny_model_dir,
        device="cpu",
        spacing=0.1,
        progress=False,
        out=tmp_path / "ray.csv",
        landmarks_out=tmp_path / "lm.csv",
    )
    # a re-run resumes: nothing left to do, the same table comes back
    again = cohort(
        tmp_path / "in", engine="ray", workers=2, model=tiny_model_dir, spacing=0.1, out=tmp_path / "ray.csv"
    )
    assert list(far["image"]) == list(local["image"])
    pd.testing.assert_frame_equal(_comparable(local), _comparable(far))
    pd.testing.assert_frame_equal(_comparable(again), _comparable(far))
    err = far[far["status"] == "error"]
    assert list(err["image"]) == ["broken.jpg"] and "broken.jpg" in err["error"].iloc[0]
    assert len(pd.read_csv(tmp_path / "lm.csv")) == 5 * 19


def test_ray_engine_needs_a_model_directory(tmp_path: Path, det: Any) -> None:
    pytest.importorskip("ray")
    _folder(tmp_path / "in", 1)
    det.directory = None
    with pytest.raises(cephspine.InvalidArgumentError, match="loaded from a directory"):
        cohort(tmp_path / "in", engine="ray", detector=det, progress=False)


def test_ray_actors_load_the_detector_with_its_options(tmp_path: Path, cluster: tuple[Any, Path]) -> None:
    from cephspine.anatomy import SPINE_LANDMARKS
    from cephspine.cohorts import _model_ref
    from tests.conftest import build_model_dir
    from tests.test_end_prior import SPINE_PRIOR

    d = build_model_dir(tmp_path / "sp", SPINE_PRIOR, anatomy="spine", landmarks=list(SPINE_LANDMARKS))
    (tmp_path / "in").mkdir()
    for i in range(3):
        pixels = np.random.default_rng(i).integers(0, 256, (700, 260), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / "in" / f"s{i}.png")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = cephspine.Detector.from_pretrained(d, device="cpu", end_prior=False, refine_flip=False)
        default = cephspine.Detector.from_pretrained(d, device="cpu")
    assert _model_ref("spine", None, plain) == (str(d), {"register": "auto", "end_prior": False, "refine_flip": False})
    assert _model_ref("spine", d, plain) == (str(d), {})
    local = cohort(tmp_path / "in", kind="spine", detector=plain, progress=False)
    other = cohort(tmp_path / "in", kind="spine", detector=default, progress=False)
    assert not _comparable(local).equals(_comparable(other))  # the options change the corners
    far = cohort(tmp_path / "in", kind="spine", engine="ray", workers=1, detector=plain, progress=False)
    pd.testing.assert_frame_equal(_comparable(local), _comparable(far))


# ---------------------------------------------------------------------------- ray failures
def _named(folder: Path, names: list[str]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        pixels = np.random.default_rng(i).integers(0, 256, (200, 160), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)
    return sorted(names)


def test_actor_killed_mid_run_costs_no_image(
    tmp_path: Path, cluster: tuple[Any, Path], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    ray, control = cluster
    (control / "delay").write_text("0.3")
    names = _named(tmp_path / "in", [f"img{i:02d}.png" for i in range(10)])
    (tmp_path / "in" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    actors = engines.ray_pool("ceph", (str(tiny_model_dir), {}), "cpu", 2, None)  # the pool the run will use
    pids = ray.get([a.ping.remote() for a in actors])
    killed: list[int] = []
    write = CohortWriter.write

    def write_then_kill(self: CohortWriter, row: Any) -> None:
        write(self, row)
        if not killed:  # right after the first row: the first actor has an image in its hands
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    monkeypatch.setattr(CohortWriter, "write", write_then_kill)
    caplog.set_level(logging.WARNING, logger="cephspine.cohorts")
    out, lm = tmp_path / "o.csv", tmp_path / "lm.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error", CohortIncompleteWarning)
        df = cohort(
            tmp_path / "in", engine="ray", workers=2, model=tiny_model_dir, device="cpu", spacing=0.1,
            progress=False, out=out, landmarks_out=lm,
        )  # fmt: skip
    assert killed
    retried = [r.getMessage() for r in caplog.records if "analysing it again" in r.getMessage()]
    assert retried and all("Actor" in m for m in retried), retried
    assert list(df["image"]) == ["broken.jpg", *names]
    assert (df["status"] == "ok").sum() == 10
    assert list(df.loc[df["status"] == "error", "image"]) == ["broken.jpg"]
    assert not df["error"].fillna("").str.contains("Actor").any()
    back = pd.read_csv(out)
    assert sorted(back["image"]) == ["broken.jpg", *names] and back["error"].fillna("").str.count("Actor").sum() == 0
    assert pd.read_csv(lm).groupby("image").size().to_dict() == dict.fromkeys(names, 19)
    assert ray.get(actors[0].ping.remote()) != pids[0]  # Ray restarted the killed actor


def test_image_whose_workers_keep_dying_gets_no_row_and_is_retried_on_resume(
    tmp_path: Path, cluster: tuple[Any, Path], tiny_model_dir: Path
) -> None:
    ray, control = cluster
    (control / "delay").write_text("0.05")
    (control / "poison").touch()
    names = _named(tmp_path / "in", ["a.png", "b.png", "c.png", "poison.png"])
    out = tmp_path / "o.csv"
    options = dict(engine="ray", workers=2, model=tiny_model_dir, device="cpu", spacing=0.1, progress=False, out=out)
    try:
        # either its workers fail three times, or (on a loaded machine, actors restarting slowly) the
        # actors' restarts run out first: both leave the image without a row, named in the warning
        gone = r"1 image\(s\) not analysed: poison\.png: (the Ray workers running it failed|no Ray worker was left)"
        with pytest.warns(CohortIncompleteWarning, match=gone):
            df = cohort(tmp_path / "in", **options)  # type: ignore[arg-type]
    finally:
        (control / "poison").unlink()
    assert list(df["image"]) == ["a.png", "b.png", "c.png"] and (df["status"] == "ok").all()
    assert sorted(pd.read_csv(out)["image"]) == ["a.png", "b.png", "c.png"]  # no row for poison.png

    with warnings.catch_warnings():
        warnings.simplefilter("error", CohortIncompleteWarning)
        again = cohort(tmp_path / "in", **options)  # type: ignore[arg-type]
    assert list(again["image"]) == names and (again["status"] == "ok").all()
    pd.testing.assert_frame_equal(again.iloc[:3], df)


def test_cli_says_which_images_were_not_analysed_and_fails(
    tmp_path: Path, cluster: tuple[Any, Path], tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cephspine.cli import app

    monkeypatch.setattr(engines, "MAX_ATTEMPTS", 2)  # give up sooner: one restart less to wait for
    ray, control = cluster
    (control / "delay").write_text("0")
    (control / "poison").touch()
    _named(tmp_path / "in", ["a.png", "poison.png"])
    args = ["cohort", str(tmp_path / "in"), "--engine", "ray", "--workers", "2", "-m", str(tiny_model_dir)]
    args += ["--device", "cpu", "--no-progress", "-o", str(tmp_path / "o.csv")]
    try:
        result = CliRunner().invoke(app, args)
    finally:
        (control / "poison").unlink()
    assert result.exit_code == 1, result.output
    assert "1 images: 1 ok, 0 error(s)" in result.stdout
    assert "error: 1 image(s) not analysed: poison.png" in result.stderr
    assert "running the same call again analyses them" in result.stderr


class _Errors:
    """The part of ``ray.exceptions`` the scheduler uses."""

    class RayError(Exception):
        pass

    class RayTaskError(RayError):
        pass

    class RayActorError(RayError):
        pass

    class ActorDiedError(RayActorError):
        pass


class _Ref:
    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error


class _FakeRay:
    """Refs finish in submission order; ``get`` returns the value or raises the error."""

    exceptions = _Errors

    def wait(self, refs: list[_Ref], num_returns: int) -> tuple[list[_Ref], list[_Ref]]:
        return refs[:1], refs[1:]

    def get(self, ref: _Ref) -> Any:
        if ref.error is not None:
            raise ref.error
        return ref.value

    def cancel(self, ref: _Ref) -> None:
        pass


class _Actor:
    """Answers ``healthy`` calls, then is gone for good."""

    def __init__(self, healthy: int) -> None:
        self.healthy = healthy
        actor = self

        class _Method:
            def __init__(self, fn: Any) -> None:
                self.remote = fn

        self.ping = _Method(lambda: _Ref(1) if actor.healthy > 0 else _Ref(error=_Errors.ActorDiedError("gone")))
        self.run = _Method(None)

    def call(self, task: Any) -> _Ref:
        self.healthy -= 1
        if self.healthy < 0:
            return _Ref(error=_Errors.ActorDiedError("The actor died unexpectedly"))
        if task[1] == "bad.png":
            return _Ref(error=_Errors.RayTaskError("ImageReadError: bad.png: not an image"))
        return _Ref(({"image": task[1], "status": "ok"}, []))


def test_scheduler_never_turns_a_worker_failure_into_a_row() -> None:
    actors = [_Actor(healthy=3), _Actor(healthy=0)]
    tasks = [(Path(f"{k}"), k, True, False) for k in ("a.png", "bad.png", "c.png", "d.png", "e.png", "f.png")]
    scheduler = engines.RayScheduler(
        _FakeRay(),
        actors,
        lambda actor, task: actor.call(task),
        lambda task, exc: {"image": task[1], "error": str(exc)},
    )
    outcomes = {task[1]: outcome for task, outcome in scheduler.run(tasks)}
    assert set(outcomes) == {t[1] for t in tasks}  # every task once
    assert scheduler.dead == {0, 1}
    rows = {k: o for k, o in outcomes.items() if isinstance(o, cephspine.cohorts.ImageResult)}
    assert rows["bad.png"].row["error"] == "ImageReadError: bad.png: not an image"  # the image's own error: a row
    assert sorted(rows) == ["a.png", "bad.png", "e.png"]
    lost = {k: o for k, o in outcomes.items() if isinstance(o, engines.NotAnalysed)}
    assert sorted(lost) == ["c.png", "d.png", "f.png"]  # in the hands of dying actors: no row, retried next run
    for o in lost.values():
        assert o.attempts == 1 and o.reason.startswith("no Ray worker was left to run it (ActorDiedError: The actor")
