"""``cohort()``: analyse a folder (or list) of radiographs into one table, one row per image.

::

    import cephspine
    df = cephspine.cohort("scans/", kind="ceph", out="results.csv", landmarks_out="landmarks.csv")
    df.groupby("anb_class")["anb_deg"].describe()
    df[df["status"] == "error"][["image", "error"]]

Every image gives exactly one row with the columns of :meth:`Analysis.to_row`. A bad image
(unreadable, corrupt, unsupported, or any other failure of that one image) gives a row with
``status="error"`` and a one-line ``error``; it never ends the run. An image whose
landmarks do not look like the anatomy of ``kind`` (a spine film in a ceph cohort) gets
``status="wrong_anatomy"``: no measures, types, classes or Cobb angles (so no statistic or
``groupby("anb_class")`` counts it), its landmarks and the warning kept. Missing values are
``pd.NA`` in text and integer columns (nullable ``string`` and ``Int64`` dtypes) and ``NaN``
in float columns, the same whether the table comes from memory, CSV or Parquet
(:mod:`cephspine.cohorts.columns`).

**Incremental output and resume.** With ``out`` (``.csv`` or ``.parquet``) each finished
image is written durably as soon as it is done (:class:`CohortWriter`). Running the same
call again after an interruption (Ctrl-C, a crash, a killed job) skips the images already
in ``out`` and processes only the rest, so the final table holds every image exactly once.
The settings the rows depend on (kind, identifiers, model and model version, registration
mode, spine decoding options, spacing) are recorded in ``<out>.settings.json``; a run with
other settings does not resume the table but stops with :class:`CohortSettingsError`,
naming what changed. An output that cannot be written (a full disk) stops the run with an
:class:`~cephspine.errors.OutputError` naming the file; the rows written before stay, and
running again (with room) resumes. Rows are keyed by :func:`image_key`: the file name (or
path relative to the folder), with a line break, tab, backslash or other control character
written as a backslash escape, so every file has its own key and its one row.

Rows with ``status="error"`` are results too: a resumed run keeps them and does not retry
those images (delete the rows, or use another ``out``, to retry). A failure of the
machinery rather than of the image (a Ray worker killed or out of memory, a node lost) is
never an error row: the image is analysed again, and if its workers keep failing it gets
no row at all (a :class:`~cephspine.errors.CohortIncompleteWarning` names it) so that a
resumed run analyses it. ``landmarks_out`` (the long table of
:meth:`Analysis.landmarks_dataframe`, every image analysed) follows the same rules; an image's
landmarks are written before its cohort row, so an image whose row is on disk has its
complete landmark block too, and an incomplete block left by a kill is removed on resume
(the image is then processed again).

**Privacy.** By default no DICOM patient identifier appears in any output: not in the
rows, the files, the progress bar or the log (error and warning texts are scrubbed of the
file's identifier values). With ``include_identifiers=True`` the ``dicom_*`` columns of
:data:`~cephspine.analysis.IDENTIFIER_FIELDS` are added.

Inputs are opened read-only and never modified. Only one image's pixels are in memory at a
time per worker; the rows kept for the returned table are small dicts.

The package's parts: :mod:`~cephspine.cohorts.inputs` (which files),
:mod:`~cephspine.cohorts.image` (the work of one image), :mod:`~cephspine.cohorts.engines`
(scheduling: threads or Ray actors), :mod:`~cephspine.cohorts.columns` and
:mod:`~cephspine.cohorts.storage` (the tables and their settings record),
:mod:`~cephspine.cohorts.settings` (what the rows depend on).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cephspine.analysis import KINDS, WRONG_ANATOMY_STATUS, default_detector
from cephspine.anatomy import CEPH_LANDMARKS, SPINE_LANDMARKS
from cephspine.cohorts.columns import landmark_columns, landmark_schema, one_line, row_columns, row_schema
from cephspine.cohorts.engines import (
    DEFAULT_LOCAL_WORKERS,
    MAX_ATTEMPTS,
    NotAnalysed,
    Task,
    require_ray,
    run_local,
    run_ray,
)
from cephspine.cohorts.image import ImageResult, analyze_image, analyze_row, image_key
from cephspine.cohorts.inputs import IMAGE_SUFFIXES, collect, list_images, read_spacing_table
from cephspine.cohorts.settings import ModelRef, cohort_settings
from cephspine.cohorts.storage import OUTPUT_SUFFIXES, CohortWriter, read_settings, settings_path
from cephspine.errors import (
    CohortIncompleteWarning,
    CohortInterrupted,
    CohortSettingsError,
    InvalidArgumentError,
    SpacingWarning,
)
from cephspine.radiograph import Spacing, as_spacing

if TYPE_CHECKING:
    from cephspine.detector import Detector

log = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("local", "ray")
"""Accepted values of ``cohort(engine=...)``."""

_WITH_LANDMARKS = ("ok", WRONG_ANATOMY_STATUS)
"""Row statuses of images analysed, so with landmark rows (an error row has none)."""


def _check_detector(kind: str, det: Any) -> None:
    want = len(CEPH_LANDMARKS) if kind == "ceph" else len(SPINE_LANDMARKS)
    if len(det.names) != want:
        raise InvalidArgumentError(f"kind={kind!r} needs a {kind} detector; got {det!r}")


def _model_ref(kind: str, model: str | os.PathLike[str] | None, detector: Detector | None) -> ModelRef:
    """``model``, the given detector's directory and load options, or the shipped model."""
    if model is not None:
        return _model_arg(model), {}
    if detector is not None:
        if detector.directory is None:
            raise InvalidArgumentError("engine='ray' needs a detector loaded from a directory (or give model=)")
        return _model_arg(detector.directory), dict(detector.load_options)
    return kind, {}


def _refuse_legacy_keys(
    paths: list[Path], keys: list[str], root: Path | None, done: set[str], table: Path | None
) -> None:
    """Refuse to resume a table whose rows key an image the way older versions did
    (line breaks folded into spaces, other control characters and backslashes as they
    are): its row would stay beside a new one. Names without such characters are keyed the
    same by every version."""
    old = [one_line(Path(p).name if root is None else Path(p).relative_to(root).as_posix()) for p in paths]
    legacy = [o for o, k in zip(old, keys) if o != k and o in done and k not in done and o not in keys]
    if legacy:
        raise CohortSettingsError(
            f"{table}: the rows of {len(legacy)} image(s) whose names hold line breaks, tabs or backslashes were "
            f"keyed by an older version (e.g. {legacy[0]!r}); write to a new table, or delete this one (and its "
            "settings file) to start over"
        )


def _model_arg(model: str | os.PathLike[str]) -> str:
    """``model`` as a text that :func:`cephspine.registry.resolve` reads the same way: a
    name stays a name; a path (an :class:`os.PathLike`) becomes an absolute path, so that
    ``Path("my-model")`` is never mistaken for a model called ``my-model``."""
    return model if isinstance(model, str) else os.fspath(Path(model).resolve())


def _output_path(value: str | os.PathLike[str] | None, what: str) -> Path | None:
    if value is None:
        return None
    p = Path(value)
    if p.suffix.lower() not in OUTPUT_SUFFIXES:
        raise InvalidArgumentError(f"{what} must end in .csv or .parquet, got {p}")
    if p.is_dir():
        raise InvalidArgumentError(f"{what} must be a file, got the folder {p}")
    return p


def _spacing_table(spacing: Any) -> dict[str, Spacing] | None:
    """``spacing`` as a per-image table (from a mapping or a CSV file), or ``None`` when it
    is one spacing for every image (checked here)."""
    if isinstance(spacing, (str, os.PathLike)):
        return read_spacing_table(spacing)
    if isinstance(spacing, Mapping):
        table: dict[str, Spacing] = {}
        for image, value in spacing.items():
            sp = as_spacing(value, what=f"spacing of {image}")
            if sp is not None:
                table[str(image)] = sp
        return table
    as_spacing(spacing)
    return None


def _spacing_by_key(table: Mapping[str, Spacing], paths: list[Path], keys: list[str]) -> dict[str, Spacing] | None:
    """The spacing the table gives each image (by its key, else by its file name), keyed
    by image key; ``None`` when it gives none. Names of the table that match no image are
    named in a :class:`~cephspine.errors.SpacingWarning`."""
    by_key: dict[str, Spacing] = {}
    used: set[str] = set()
    for p, k in zip(paths, keys):
        name = k if k in table else p.name if p.name in table else None
        if name is not None:
            by_key[k] = table[name]
            used.add(name)
    unused = [n for n in table if n not in used]
    if unused:
        shown = ", ".join(unused[:5]) + (f" and {len(unused) - 5} more" if len(unused) > 5 else "")
        warnings.warn(
            f"{len(unused)} image(s) of the spacing table are not in the cohort: {shown}", SpacingWarning, stacklevel=3
        )
    return by_key or None


def _not_analysed_message(lost: list[tuple[str, NotAnalysed]], out: Path | None) -> str:
    names = [k for k, _ in lost]
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    where = f"they have no row in {out}, so running the same call again analyses them" if out else (
        "run the cohort again on them"
    )  # fmt: skip
    return f"{len(names)} image(s) not analysed: {shown}: {lost[-1][1].reason}; {where}"


def cohort(
    images: str | os.PathLike[str] | Iterable[str | os.PathLike[str]],
    kind: str = "ceph",
    *,
    out: str | os.PathLike[str] | None = None,
    landmarks_out: str | os.PathLike[str] | None = None,
    detector: Detector | None = None,
    spacing: Any = None,
    include_identifiers: bool = False,
    progress: bool = True,
    recursive: bool = False,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    model: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> pd.DataFrame:
    """Analyse many radiographs into one table, one row per image.

    Args:
        images: a folder (its image files, sorted; see :data:`IMAGE_SUFFIXES`), or an
            iterable of file paths (distinct file names).
        kind: ``"ceph"`` or ``"spine"``.
        out: ``.csv`` or ``.parquet`` file written as images finish; a re-run with the
            same settings resumes (see the module documentation).
        landmarks_out: ``.csv`` or ``.parquet`` file for the long landmark table of the
            ok images, written and resumed in the same way.
        detector: a loaded :class:`~cephspine.Detector` (default: the shipped model of
            ``kind``, loaded once).
        spacing: pixel spacing in mm overriding the files': for every image (a number or
            ``(row_mm, col_mm)``), or per image: a mapping image name → spacing, or a CSV
            file of ``image, spacing_mm`` (or ``image, row_mm, col_mm``; an annotation CSV
            with a spacing column works too, see
            :func:`~cephspine.cohorts.inputs.read_spacing_table`). An image is matched by
            its key (file name, or path relative to the folder), else by its file name; an
            image the table leaves out keeps its file's own spacing.
        include_identifiers: add the DICOM patient identifiers as ``dicom_*`` columns.
            Off by default: no identifier appears in any output.
        progress: show a progress bar on stderr (when it is a terminal).
        recursive: include the sub-folders of a folder.
        engine: ``"local"`` (this process) or ``"ray"`` (Ray actors, one model each, on
            the cluster at ``address`` or on a local Ray started for the purpose; needs
            ``cephspine[ray]``; the image paths must be readable by the workers).
        workers: ``"local"``: images analysed at once by threads sharing the model
            (default :data:`DEFAULT_LOCAL_WORKERS`: 2 on a machine with 2 or more CPUs,
            where decoding one image overlaps the network on another); ``"ray"``: number
            of actors (default: one per CPU of the cluster).
        address: ``"ray"``: the cluster address (default: start or reuse a local Ray).
        model: model name or directory, instead of ``detector`` (default: the shipped
            model of ``kind``); for ``"ray"``, each actor loads it (or ``detector``'s
            directory with its load options).
        device: device of the default or ``model`` detector (``"auto"``, ``"cpu"``, ...).

    Returns:
        The table (columns of :meth:`Analysis.to_row`): previous rows of ``out`` and the
        new ones, each image once, in input order (rows of ``out`` for images not among
        ``images`` come last). ``status`` is ``"ok"``, ``"wrong_anatomy"`` (the image does
        not look like the anatomy of ``kind``: results empty, see
        :attr:`Analysis.wrong_anatomy`) or ``"error"`` with the reason in ``error``;
        warnings about an image are in its ``warnings`` column. Text columns
        have the ``string`` dtype and integer columns ``Int64``, both with ``pd.NA`` for a
        missing value; the others are ``float64`` with ``NaN``. Images whose workers
        kept failing (``engine="ray"``) have no row; a
        :class:`~cephspine.errors.CohortIncompleteWarning` names them. ``df.attrs["cohort"]``
        counts the run: ``images``, ``reused`` (rows of ``out`` kept from an earlier run),
        ``analysed`` and ``not_analysed``.

    Raises:
        InvalidArgumentError: unknown ``engine`` or ``kind``, a detector for another kind,
            both ``detector`` and ``model``, a bad output suffix, two listed images with
            the same file name, or another bad option.
        CohortSettingsError: ``out`` or ``landmarks_out`` has rows made with other
            settings (or other columns) than this run; the message names what changed.
        SpacingError: ``spacing`` (or a spacing of its table) is not a positive number or pair.
        MissingDependencyError: ``engine="ray"`` without Ray (``cephspine[ray]``), or a
            ``.parquet`` output without pyarrow (``cephspine[parquet]``).
        InputNotFoundError: ``images`` does not exist, or is a folder without image files;
            a spacing CSV that does not exist.
        UnknownModelError, ModelLoadError: ``model`` is not a usable model.
        OutputError: ``out`` or ``landmarks_out`` is being written by another run, or
            cannot be written (a full disk, no permission; the message names the file and
            the cause). The rows written before stay, for a resumed run.
        CohortInterrupted: the run was interrupted (Ctrl-C); a :class:`KeyboardInterrupt`
            saying how many images are done and where. The rows written before stay, for
            a resumed run.
    """
    if engine not in ENGINES:
        raise InvalidArgumentError(f"engine must be one of {', '.join(repr(e) for e in ENGINES)}; got {engine!r}")
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or workers < 1):
        raise InvalidArgumentError(f"workers must be at least 1, got {workers!r}")
    if engine == "local" and address is not None:
        raise InvalidArgumentError("address is an option of engine='ray'")
    if kind not in KINDS:
        raise InvalidArgumentError(f"kind must be one of {', '.join(KINDS)}; got {kind!r}")
    if detector is not None and model is not None:
        raise InvalidArgumentError("give detector or model, not both")
    table = _spacing_table(spacing)
    out_path = _output_path(out, "out")
    lm_path = _output_path(landmarks_out, "landmarks_out")
    if out_path is not None and lm_path is not None and os.path.abspath(out_path) == os.path.abspath(lm_path):
        raise InvalidArgumentError("out and landmarks_out must be different files")
    if detector is not None:
        _check_detector(kind, detector)
    if engine == "ray":
        require_ray()
        source: ModelRef | Detector = _model_ref(kind, model, detector)
    else:
        source = detector if detector is not None else (_model_arg(model) if model is not None else kind, {})
    paths, root = collect(images, recursive)
    keys = [image_key(p, root) for p in paths]
    run_spacing = _spacing_by_key(table, paths, keys) if table is not None else spacing
    settings = cohort_settings(kind, include_identifiers, run_spacing, source)
    schema, lm_schema = row_schema(kind, include_identifiers), landmark_schema(kind)

    writers: list[CohortWriter] = []
    lost: list[tuple[str, NotAnalysed]] = []
    results: Any = None
    rows_done: set[str] = set()
    new_rows: list[dict[str, Any]] = []
    try:
        writer = lm_writer = None
        if out_path is not None:
            writer = CohortWriter(
                out_path, schema.columns, schema.text, integer_columns=schema.integer, settings=settings
            )  # fmt: skip
            writers.append(writer)
        if lm_path is not None:
            lm_writer = CohortWriter(
                lm_path, lm_schema.columns, lm_schema.text, integer_columns=lm_schema.integer,
                rows_per_image=len(CEPH_LANDMARKS) if kind == "ceph" else len(SPINE_LANDMARKS), settings=settings,
            )  # fmt: skip
            writers.append(lm_writer)
        rows_done = writer.done() if writer is not None else set()
        lm_done = lm_writer.done() if lm_writer is not None else set()
        _refuse_legacy_keys(paths, keys, root, rows_done | lm_done, out_path or lm_path)

        todo: list[Task] = []
        for p, k in zip(paths, keys):
            need_row = k not in rows_done
            analysed = need_row or writer is None or writer.status(k) in _WITH_LANDMARKS
            need_lm = lm_writer is not None and k not in lm_done and analysed
            if need_row or need_lm:
                todo.append((p, k, need_row, need_lm))
        log.info(
            "cohort: %d image(s), %d already in the output, %d to analyse",
            len(paths),
            len(paths) - len(todo),
            len(todo),
        )
        if engine == "ray":
            results = run_ray(todo, kind, source, run_spacing, include_identifiers, root, workers, address, device)  # type: ignore[arg-type]
        else:
            det = detector
            if det is None and todo:
                if model is not None:
                    from cephspine.detector import Detector

                    det = Detector.from_pretrained(model, device=device)
                else:
                    det = default_detector(kind, device)
            if det is not None:
                _check_detector(kind, det)
            analyze = partial(
                _analyze_one, kind=kind, detector=det, spacing=run_spacing, include_identifiers=include_identifiers,
                root=root,
            )  # fmt: skip
            results = run_local(todo, analyze, workers or DEFAULT_LOCAL_WORKERS)

        n_errors = 0
        from tqdm import tqdm

        with tqdm(
            total=len(todo), desc=f"cohort {kind}", unit="image", disable=None if progress else True, file=sys.stderr
        ) as bar:
            for (_p, key, need_row, need_lm), result in results:
                if isinstance(result, NotAnalysed):
                    lost.append((key, result))
                else:
                    if lm_writer is not None and need_lm and result.landmarks:
                        lm_writer.write_rows(result.landmarks)
                    if writer is not None and need_row:
                        writer.write(result.row)
                    if need_row:
                        new_rows.append(result.row)
                        n_errors += not result.ok
                bar.set_postfix(errors=n_errors, **({"not_analysed": len(lost)} if lost else {}), refresh=False)
                bar.update()
        for w in writers:
            w.close()
    except BaseException as exc:
        for w in writers:
            w.abort()
        if results is not None:  # end the images in flight here, their warnings still captured
            with contextlib.suppress(Exception):
                results.close()
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, CohortInterrupted):
            # counted from what the writers hold on disk, exact wherever the interruption came
            on_disk = {w.path: len(w.done() & set(keys)) for w in writers}
            raise CohortInterrupted(
                on_disk.get(out_path, 0) if out_path is not None else 0, len(new_rows), len(paths),
                str(out) if out_path is not None else None,
                landmarks_out=str(landmarks_out) if lm_path is not None else None,
                landmarks_done=on_disk.get(lm_path, 0) if lm_path is not None else 0,
            ) from exc  # fmt: skip
        raise
    log.info("cohort: %d analysed, %d error row(s), %d not analysed", len(new_rows), n_errors, len(lost))
    if lost:
        message = _not_analysed_message(lost, out_path)
        log.warning("cohort: %s", message)
        warnings.warn(message, CohortIncompleteWarning, stacklevel=2)

    df = writer.read() if writer is not None else schema.frame(new_rows)
    order = {k: i for i, k in enumerate(keys)}
    rank = df["image"].map(lambda k: order.get(k, len(order)))
    df = df.iloc[np.argsort(rank.to_numpy(), kind="stable")].reset_index(drop=True)
    df.attrs["cohort"] = {
        "images": len(paths),
        "reused": sum(k in rows_done for k in keys),
        "analysed": len(new_rows),
        "not_analysed": len(lost),
    }
    return df


def _analyze_one(
    path: Path, *, kind: str, detector: Detector | None, spacing: Any, include_identifiers: bool, root: Path | None
) -> ImageResult:  # fmt: skip
    # analyze_image is looked up at call time, so that the per-image work can be wrapped
    assert detector is not None  # loaded whenever there are images to analyse
    if isinstance(spacing, dict):  # per image, by key; an image left out keeps its file's own
        spacing = spacing.get(image_key(path, root))
    return analyze_image(path, kind, detector, spacing, include_identifiers, root)


__all__ = [
    "DEFAULT_LOCAL_WORKERS",
    "ENGINES",
    "IMAGE_SUFFIXES",
    "MAX_ATTEMPTS",
    "OUTPUT_SUFFIXES",
    "CohortWriter",
    "ImageResult",
    "analyze_image",
    "analyze_row",
    "cohort",
    "image_key",
    "landmark_columns",
    "landmark_schema",
    "list_images",
    "read_spacing_table",
    "read_settings",
    "row_columns",
    "row_schema",
    "settings_path",
]
