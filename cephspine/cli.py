"""Command-line interface (``cephspine`` / ``python -m cephspine``): thin wrappers over the API.

Heavy imports happen inside the commands so that ``--help`` is instant.
Exit codes: 0 ok, 1 processing error, 2 usage error.
"""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Any

import typer

app = typer.Typer(
    name="cephspine",
    help="Landmarks and clinical measures on cephalograms and spine X-rays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
train_app = typer.Typer(help="Train a model on a dataset folder.", no_args_is_help=True)
evaluate_app = typer.Typer(help="Evaluate a model on an annotated dataset folder.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

_state = {"debug": False}


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


@app.callback()
def _main(debug: bool = typer.Option(False, "--debug", help="Show full tracebacks on errors.")) -> None:
    _state["debug"] = debug


def _fail(exc: BaseException) -> None:
    if _state["debug"]:
        raise exc
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the models that ship with cephspine (and those in $CEPHSPINE_WEIGHTS)."""
    from cephspine.registry import available_models, experimental_status, read_card, resolve

    for name in available_models():
        card = read_card(resolve(name))
        m = card.get("metrics", {})
        acc = f"val MRE {m['mre_mm']:.2f} mm, SDR 2 mm {m['sdr_2mm_pct']:.1f} %" if "mre_mm" in m else ""
        if "cobb_smape_pct" in m:
            acc += f", Cobb SMAPE {m['cobb_smape_pct']:.1f} %"
        status = "\texperimental" if experimental_status(card) is not None else ""
        typer.echo(f"{name}\t{card['version']}\t{len(card['landmarks'])} landmarks\t{acc}{status}")


END_PRIOR_OPTION = typer.Option(
    True,
    "--end-prior/--no-end-prior",
    help="Spine: choose T1 and L5 with the model's end prior (turn it off for images framed unlike "
    "the training images, e.g. full-length radiographs).",
)
REFINE_FLIP_OPTION = typer.Option(
    True,
    "--refine-flip/--no-refine-flip",
    help="Spine: also refine each vertebra's mirror image (off: about half the refinement time).",
)


@app.command()
def predict(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Radiograph: JPEG, PNG, TIFF or DICOM."),
    model: str = typer.Option("ceph", "--model", "-m", help="Model name or model directory."),
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm, overriding the file's."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
) -> None:
    """Predict the landmarks of one radiograph."""
    import warnings

    from cephspine.detector import Detector
    from cephspine.errors import CephspineError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = Detector.from_pretrained(model, device=_device(device), end_prior=end_prior, refine_flip=refine_flip)
            pred = det.predict(image, spacing=spacing)
    except CephspineError as exc:
        _fail(exc)
        return
    df = pred.to_dataframe()
    if fmt is OutputFormat.csv:
        df.to_csv(sys.stdout, index=False)
    elif fmt is OutputFormat.json:
        typer.echo(df.to_json(orient="records", indent=1))
    else:
        typer.echo(df.drop(columns=["image", "model"]).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        for w in pred.warnings:
            typer.echo(f"warning: {w}", err=True)


class Kind(str, Enum):
    ceph = "ceph"
    spine = "spine"


def _detector(kind: Kind, model: str | None, device: str, end_prior: bool = True, refine_flip: bool = True) -> Any:
    """The detector for ``kind``: the shipped one, or ``model`` (name or directory)."""
    from cephspine.analysis import default_detector
    from cephspine.detector import Detector

    if model is None and end_prior and refine_flip:
        return default_detector(kind.value, _device(device))
    return Detector.from_pretrained(
        model or kind.value, device=_device(device), end_prior=end_prior, refine_flip=refine_flip
    )


def _measures_text(a: Any) -> str:
    df = a.to_dataframe()
    return df.drop(columns=["image"]).to_string(index=False, float_format=lambda v: f"{v:.2f}")


@app.command()
def analyze(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Radiograph: JPEG, PNG, TIFF or DICOM."),
    kind: Kind = typer.Option(Kind.ceph, "--kind", "-k", help="Anatomy: cephalogram or spine."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or directory (default: the shipped one)."),
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm, overriding the file's."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Add DICOM patient identifiers to the output (off by default)."
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
) -> None:
    """Landmarks and clinical measures of one radiograph.

    Ceph: the 8 ISBI measures with normal ranges and anatomical types. Spine: the 3 Cobb
    angles (PT, MT, TL) with end vertebrae and severity.
    """
    import warnings

    from cephspine.analysis import analyze as run
    from cephspine.errors import CephspineError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = run(
                image, kind.value, spacing=spacing, include_identifiers=include_identifiers,
                detector=_detector(kind, model, device, end_prior, refine_flip),
            )  # fmt: skip
    except (CephspineError, ValueError) as exc:
        _fail(exc)
        return
    if fmt is OutputFormat.json:
        typer.echo(a.to_json(indent=1))
    elif fmt is OutputFormat.csv:
        import pandas as pd

        pd.DataFrame([a.to_row()]).to_csv(sys.stdout, index=False)
    else:
        typer.echo(repr(a.prediction))
        typer.echo(_measures_text(a))
        for w in a.warnings:
            typer.echo(f"warning: {w}", err=True)


@app.command()
def report(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Radiograph: JPEG, PNG, TIFF or DICOM."),
    out: Path = typer.Option(..., "--out", "-o", help="PDF file to write (replaced only on success)."),
    kind: Kind = typer.Option(Kind.ceph, "--kind", "-k", help="Anatomy: cephalogram or spine."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or directory (default: the shipped one)."),
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm, overriding the file's."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Print DICOM patient identifiers in the report (off by default)."
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
) -> None:
    """Write a PDF report (annotated image, measures with normal ranges, flags) for one radiograph."""
    import warnings

    from cephspine.errors import CephspineError
    from cephspine.reports import report as run

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = run(
                image, out, kind=kind.value, spacing=spacing, include_identifiers=include_identifiers,
                detector=_detector(kind, model, device, end_prior, refine_flip),
            )  # fmt: skip
    except (CephspineError, ValueError, OSError) as exc:
        _fail(exc)
        return
    typer.echo(_measures_text(a))
    typer.echo(f"report written to {out}")


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def cohort(
    images: Path = typer.Argument(..., exists=True, metavar="FOLDER", help="Folder of radiographs."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Results table (.csv or .parquet), written as it goes; a re-run resumes."
    ),
    kind: Kind = typer.Option(Kind.ceph, "--kind", "-k", help="Anatomy: cephalogram or spine."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or directory (default: the shipped one)."),
    landmarks_out: Path | None = typer.Option(None, "--landmarks-out", help="Long landmark table (.csv/.parquet)."),
    summary_pdf: Path | None = typer.Option(None, "--summary-pdf", help="Write a cohort summary PDF here."),
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm for every image, overriding the files'."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Include sub-folders."),
    engine: Engine = typer.Option(Engine.local, help="'local' (this process) or 'ray' (needs cephspine[ray])."),
    workers: int | None = typer.Option(
        None,
        help="local: images analysed at once by threads (default: 2 on 2+ CPUs); ray: actors (default: 1 per CPU).",
    ),
    address: str | None = typer.Option(None, help="Ray: cluster address (default: start a local Ray)."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Add DICOM patient identifiers as dicom_* columns (off by default)."
    ),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Format of the table printed."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
) -> None:
    """Analyse every radiograph in a folder into one table, one row per image.

    Rows hold the measures (ceph) or Cobb angles (spine), mean confidence, status and error
    message; a bad image becomes an error row, never the end of the run. With --out the
    table is written as it goes and a re-run of the same command resumes.
    """
    from cephspine.cohorts import cohort as run
    from cephspine.errors import CephspineError

    try:
        detector = None if end_prior and refine_flip else _detector(kind, model, device, end_prior, refine_flip)
        df = run(
            images, kind.value, out=out, landmarks_out=landmarks_out, spacing=spacing, recursive=recursive,
            include_identifiers=include_identifiers, progress=progress, engine=engine.value, workers=workers,
            address=address, model=model if detector is None else None, device=_device(device), detector=detector,
        )  # fmt: skip
        if summary_pdf is not None:
            from cephspine.reports import write_cohort_report

            write_cohort_report(df, summary_pdf, kind=kind.value)
    except (CephspineError, ValueError, OSError, ImportError) as exc:
        _fail(exc)
        return
    if fmt is OutputFormat.csv:
        df.to_csv(sys.stdout, index=False)
    elif fmt is OutputFormat.json:
        typer.echo(df.to_json(orient="records", indent=1))
    else:
        n_err = int((df["status"] == "error").sum()) if len(df) else 0
        typer.echo(f"{len(df)} images: {len(df) - n_err} ok, {n_err} error(s)")
        for _, r in df[df["status"] == "error"].iterrows():
            typer.echo(f"error: {r['image']}: {r['error']}", err=True)
        if out is not None:
            typer.echo(f"results in {out}")


@train_app.command("ceph")
def train_ceph_cmd(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Folder in the ISBI 2015 layout."),
    out: Path = typer.Option(..., help="Run folder (checkpoints; the model goes to OUT/model)."),
    epochs: int = typer.Option(40, help="Coarse-stage epochs."),
    steps: int = typer.Option(1500, help="Refinement-stage steps (each: a patch per landmark of two images)."),
    threads: int | None = typer.Option(None, help="Torch CPU threads (default: torch's)."),
) -> None:
    """Train the two-stage cephalometric model (resumes from OUT's checkpoints)."""
    import logging

    from cephspine.errors import CephspineError
    from cephspine.training.ceph import train_ceph

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        model_dir = train_ceph(data, out, epochs=epochs, steps=steps, threads=threads)
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    typer.echo(f"model written to {model_dir}")


@evaluate_app.command("ceph")
def evaluate_ceph_cmd(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Folder in the ISBI 2015 layout."),
    model: str = typer.Option("ceph", "--model", "-m", help="Model name or directory."),
    truth: str = typer.Option("mean", help="'mean' of both doctors or 'senior'."),
    csv: Path | None = typer.Option(None, help="Write per-landmark errors of every image here."),
    ids: str | None = typer.Option(None, help="Comma-separated image ids (default: all)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format of the summary."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """Print MRE, SD and SDR at 2/2.5/3/4 mm (the paper's Table I) and per-landmark errors."""
    import warnings

    from cephspine.detector import Detector
    from cephspine.errors import CephspineError
    from cephspine.evaluation import evaluate_ceph
    from cephspine.io.datasets import parse_ids

    if truth not in ("mean", "senior"):
        raise typer.BadParameter("truth must be 'mean' or 'senior'")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = evaluate_ceph(
                Detector.from_pretrained(model, device=_device(device)),
                data,
                ids=parse_ids(ids) if ids else None,
                truth=truth,
            )
        table = ev.table()
        if csv is not None:
            ev.per_image().to_csv(csv, index=False)
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    if fmt is OutputFormat.csv:
        table.to_csv(sys.stdout)
    elif fmt is OutputFormat.json:
        typer.echo(json.dumps(json.loads(table.to_json(orient="index")), indent=1))
    else:
        typer.echo(f"{len(ev.ids)} images, truth: {truth}")
        typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


@train_app.command("spine")
def train_spine_cmd(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Folder in the AASCE layout."),
    out: Path = typer.Option(..., help="Run folder (checkpoints; the model goes to OUT/model)."),
    epochs: int = typer.Option(15, help="Coarse-stage epochs."),
    steps: int = typer.Option(1000, help="Refinement-stage steps (each: a patch per vertebra of two images)."),
    threads: int | None = typer.Option(None, help="Torch CPU threads (default: torch's)."),
) -> None:
    """Train the two-stage spine model (68 corners; resumes from OUT's checkpoints)."""
    import logging

    from cephspine.errors import CephspineError
    from cephspine.training.spine import train_spine

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        model_dir = train_spine(data, out, epochs=epochs, steps=steps, threads=threads)
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    typer.echo(f"model written to {model_dir}")


@evaluate_app.command("spine")
def evaluate_spine_cmd(
    data: Path = typer.Option(..., exists=True, file_okay=False, help="Folder in the AASCE layout."),
    model: str = typer.Option("spine", "--model", "-m", help="Model name or directory."),
    ids: str | None = typer.Option(None, help="Comma-separated image file names (default: all)."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format of the summary."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """Print SDR at 2/3/4/6 mm (L4–L5 = 35 mm), MRE (px and mm) and the Cobb-angle SMAPE."""
    import warnings

    from cephspine.detector import Detector
    from cephspine.errors import CephspineError
    from cephspine.evaluation import evaluate_spine

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = Detector.from_pretrained(model, device=_device(device))
            ev = evaluate_spine(det, data, ids=[i.strip() for i in ids.split(",")] if ids else None)
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    summary = ev.summary()
    if fmt is OutputFormat.json:
        typer.echo(json.dumps(summary, indent=1))
    elif fmt is OutputFormat.csv:
        typer.echo("metric,value")
        for k, v in summary.items():
            typer.echo(f"{k},{v:.4f}")
    else:
        for k, v in summary.items():
            typer.echo(f"{k:<16} {v:10.3f}")


def _device(spec: str) -> str:
    """Validate a device option before any work is done."""
    import torch

    if spec == "auto":
        return spec
    try:
        dev = torch.device(spec)
    except (RuntimeError, ValueError):
        raise typer.BadParameter(f"unknown device {spec!r}; use 'auto', 'cpu' or 'cuda'") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise typer.BadParameter("device 'cuda' requested but no CUDA GPU is available")
    return spec


def main() -> None:
    app()
