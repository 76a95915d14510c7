"""Command-line interface (``cephspine`` / ``python -m cephspine``): thin wrappers over the API.

Heavy imports happen inside the commands so that ``--help`` is instant.
Exit codes: 0 ok, 1 processing error, 2 usage error.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

try:  # typer vendors click from 0.2x on
    from typer._click.exceptions import ClickException as _ClickException
except ImportError:  # pragma: no cover - an older typer on click itself
    from click.exceptions import ClickException as _ClickException  # type: ignore[assignment]

from cephspine._csvcells import escape_frame, write_frame
from cephspine.errors import ImageReadError, SpacingError

DEBUG_FLAG = "--debug"

_IMAGE_ERRORS = (ImageReadError, SpacingError)
"""Errors always about the input image: the CLI names the image before their cause."""


def _plain_help(params: list[Any]) -> list[Any]:
    """Help that reads naturally: ``IMAGE`` (not ``{IMAGE}``) in the usage line, and no
    ``<bool>`` after flags (``--debug``, ``-r, --recursive``, ``--help``)."""
    for p in params:
        if type(p) is TyperArgument:
            p.__class__ = _Argument
        elif type(p) is TyperOption and p.is_flag:
            p.__class__ = _Flag
    return params


class _Argument(TyperArgument):
    def _usage_display_name(self) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")


class _Flag(TyperOption):
    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _Command(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_help(super().get_params(ctx))

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:  # ``--debug`` works before and after the command
            args = _debug_first(args)
        return super().parse_args(ctx, args)

    def main(
        self, args: Sequence[str] | None = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, windows_expand_args: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        """Run the command line; a usage error (a bad option value, an unknown option, a
        missing argument) prints one ``error:`` line naming the command's ``--help`` and
        exits with status 2."""
        run = super().main
        if not standalone_mode:
            return run(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            rv = run(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except _ClickException as exc:
            if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help
                typer.echo(_usage_line(exc), err=True)
            sys.exit(exc.exit_code)
        except typer.Abort:
            typer.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


def _usage_line(exc: Any) -> str:
    """A usage error as one line: ``error: invalid value for '--kind' / '-k': 'skull' is
    not one of 'ceph', 'spine' (see 'cephspine analyze --help')``."""
    text = " ".join(exc.format_message().replace("Value error, ", "").split()).rstrip(".")
    text = text[:1].lower() + text[1:]
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command.get_help_option(ctx) is not None:
        text += f" (see '{ctx.command_path} {ctx.help_option_names[0]}')"
    return f"error: {text}"


def _debug_first(args: list[str]) -> list[str]:
    """Move every ``--debug`` (before a ``--`` separator) to the front of the arguments."""
    end = args.index("--") if "--" in args else len(args)
    if DEBUG_FLAG not in args[:end]:
        return args
    return [DEBUG_FLAG, *(a for a in args[:end] if a != DEBUG_FLAG), *args[end:]]


class _Typer(typer.Typer):
    """A typer app whose commands and groups use the plain help above."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cls=_Group, **kwargs)

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or _Command, **kwargs)


app = _Typer(
    name="cephspine",
    help="Landmarks and clinical measures on cephalograms and spine X-rays.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
train_app = _Typer(help="Train a model on a dataset folder.", no_args_is_help=True)
evaluate_app = _Typer(help="Evaluate a model on an annotated dataset folder.", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(evaluate_app, name="evaluate")

_state = {"debug": False}


class OutputFormat(str, Enum):
    table = "table"
    csv = "csv"
    json = "json"


class ExportFormat(str, Enum):
    csv = "csv"
    coco = "coco"
    dicom_sr = "dicom-sr"


@app.callback()
def _main(
    debug: bool = typer.Option(False, DEBUG_FLAG, help="Show full tracebacks on errors (before or after the command)."),
) -> None:
    _state["debug"] = debug


def _message(error: BaseException | str) -> str:
    """The text of an error on one line (an ``OSError`` as ``path: reason``, a ``KeyError``
    unquoted)."""
    if isinstance(error, OSError) and error.strerror:
        # "[Errno 2] reason: 'path'" → "path: reason" (or the reason alone when it names the path)
        text = str(error.strerror)
        if error.filename is not None and str(error.filename) not in text:
            text = f"{error.filename}: {text}"
    elif isinstance(error, KeyError) and len(error.args) == 1:
        text = str(error.args[0])
    else:
        text = str(error)
    return " ".join(text.split())


_TYPE_PREFIX = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception): ")


def _names_file(head: str, name: str) -> bool:
    """Whether ``head`` (the text before a message's first ``": "``) is the file ``name``:
    as given, or any path to a file of that name (messages may give it absolute)."""
    return bool(head) and (head == name or Path(head).name == Path(name).name)


def _without_name(text: str, name: str) -> tuple[str, bool]:
    """``text`` without a leading exception type and leading mentions of the file ``name``
    (``"ImageReadError: /data/bad.jpg: cause"`` → ``"cause"``), and whether it named the file."""
    rest, named = text, False
    while True:
        m = _TYPE_PREFIX.match(rest)
        if m:
            rest = rest[m.end() :]
            continue
        head, sep, tail = rest.partition(": ")
        if not (sep and _names_file(head, name)):
            break
        rest, named = tail, True
    return (rest, True) if named else (text, False)


def _error_line(
    error: BaseException | str, name: str | os.PathLike[str] | None = None, *, about_file: bool = False
) -> str:
    """The one line printed for an error: ``error: <file>: <cause>`` when it is about the
    file ``name`` (named once, as the user gave it), ``error: <cause>`` otherwise.
    ``error`` is an exception or its text (e.g. a cohort row's ``error`` cell).
    ``about_file``: the error is about ``name`` even where its text does not say so (a
    cohort row's error): the file is named anyway, and a cephspine error type before the
    cause dropped (``"InvalidArgumentError: cause"`` → ``"error: <file>: cause"``)."""
    text = _message(error)
    if name is None:
        return f"error: {text}"
    shown = os.fspath(name)
    cause, named = _without_name(text, shown)
    if named or isinstance(error, _IMAGE_ERRORS):
        return f"error: {shown}: {cause}"
    if about_file:
        return f"error: {shown}: {_without_own_type(text)}"
    return f"error: {text}"


def _without_own_type(text: str) -> str:
    """``text`` without a leading cephspine error type (``"LandmarkError: cause"`` →
    ``"cause"``); another type stays (``"KeyError: 'x'"`` says little without it)."""
    from cephspine import errors

    m = _TYPE_PREFIX.match(text)
    if m is None:
        return text
    cls = getattr(errors, m.group().rstrip(": ").rsplit(".", 1)[-1], None)
    if isinstance(cls, type) and issubclass(cls, errors.CephspineError):
        return text[m.end() :]
    return text


def _fail(exc: BaseException, name: str | os.PathLike[str] | None = None) -> None:
    """Print ``exc`` as one ``error:`` line naming ``name`` (the file as given) at most
    once, and exit with status 1 (``--debug``: raise it with its traceback)."""
    if _state["debug"]:
        raise exc
    typer.echo(_error_line(exc, name), err=True)
    raise typer.Exit(1)


@app.command()
def models() -> None:
    """List the models that ship with cephspine (and those in $CEPHSPINE_WEIGHTS)."""
    from cephspine.registry import available_models, experimental_status, read_card, resolve

    for name in available_models():
        card = read_card(resolve(name))
        m = card.get("metrics", {})
        where = "cross-validated" if "fold_sd" in m else "held-out"
        acc = f"{where} MRE {m['mre_mm']:.2f} mm, SDR 2 mm {m['sdr_2mm_pct']:.1f} %" if "mre_mm" in m else ""
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

    from cephspine.analysis import landmark_table, pseudonym
    from cephspine.detector import Detector
    from cephspine.errors import CephspineError
    from cephspine.io import load_image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            det = Detector.from_pretrained(model, device=_device(device), end_prior=end_prior, refine_flip=refine_flip)
            rg = load_image(image, spacing=spacing)
            pred = det.predict(rg)
    except CephspineError as exc:
        _fail(exc, image)
        return
    df = landmark_table(pred, image=rg.name, pseudonym=pseudonym(rg))  # the table of the "csv" export
    if fmt is OutputFormat.csv:
        escape_frame(df).to_csv(sys.stdout, index=False)
    elif fmt is OutputFormat.json:
        typer.echo(df.to_json(orient="records", indent=1))
    else:
        _banner(pred.wrong_anatomy, str(det.card.get("anatomy", "")), rg.name)
        same = ["image", "pseudonym", "model", "spacing_row_mm", "spacing_col_mm"]  # one value for every row
        typer.echo(df.drop(columns=same).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    _print_warnings(pred.warnings)
    _exit_if_not_a_result(pred.wrong_anatomy)


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


def _banner(wrong_anatomy: bool, anatomy: str, name: str) -> None:
    """The first line of a table output whose image does not look like ``anatomy``
    (:func:`~cephspine.plausibility.not_a_result`), so that it is not read as a result."""
    if wrong_anatomy:
        from cephspine.plausibility import not_a_result

        typer.echo(not_a_result(anatomy, name))


def _exit_if_not_a_result(wrong_anatomy: bool) -> None:
    """Exit with status 1, after the output, when the image does not look like the anatomy
    of its model: the output is there to check the image, not a result."""
    if wrong_anatomy:
        raise typer.Exit(1)


def _print_warnings(messages: Any) -> None:
    """Each warning about the image on its own ``warning:`` line (stderr)."""
    for w in messages:
        typer.echo(f"warning: {w}", err=True)


def _spacing_hint(a: Any, image: Path) -> None:
    """Ceph without a pixel spacing: a ``warning:`` line naming the option that gives it."""
    if a.kind == "ceph" and a.prediction.spacing is None:
        typer.echo(f"warning: {image}: the measures in mm need the pixel spacing: give it with --spacing MM", err=True)


def _cell_text(v: Any) -> str:
    if isinstance(v, float):
        return "" if v != v else f"{v:.2f}"  # NaN: empty
    return "" if v is None else str(v)


_IDENTITY_COLUMNS = ("image", "pseudonym")
"""Columns of ``Analysis.to_dataframe()`` naming the image: kept in files, not shown on screen."""


def _measures_text(a: Any) -> str:
    """The measures (ceph) or Cobb angles (spine) as a table; a measure that could not be
    computed keeps its row, its value saying why (e.g. ``n/a (needs pixel spacing)``)."""
    import pandas as pd

    from cephspine.geometry.cobb import COBB_CURVES
    from cephspine.geometry.norms import CEPH_MEASURES, CEPH_NORMS, MEASURE_UNITS

    df = a.to_dataframe().drop(columns=list(_IDENTITY_COLUMNS))  # the same on every row
    missing = a.not_computed()
    if not missing:
        return str(df.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    if a.kind == "ceph":
        key, value, order = "measure", "value", CEPH_MEASURES
        columns = ["measure", "value", "unit", "type", "label", "normal_low", "normal_high", "normal_range"]
    else:
        key, value, order = "curve", "angle_deg", COBB_CURVES
        columns = ["curve", "angle_deg", "upper_vertebra", "lower_vertebra", "severity"]
    rows = {r[key]: {c: _cell_text(v) for c, v in r.items()} for r in df.to_dict("records")}
    for m, why in missing.items():
        rows[m] = {key: m, value: f"n/a ({why})"}
        if a.kind == "ceph":
            rows[m] |= {"unit": MEASURE_UNITS[m], "normal_range": CEPH_NORMS[m].normal_range}
    table = pd.DataFrame([rows[m] for m in order if m in rows], columns=list(df.columns) or columns)
    return str(table.astype(object).fillna("").to_string(index=False))


ANALYSIS_OPTION = typer.Option(
    None,
    "--analysis",
    help="Ceph: also show a named analysis (steiner, downs, tweed, bjork-jarabak, mcnamara, holdaway, "
    "burstone-legan, ricketts, or all); repeat for several. With --format csv the analyses' table is "
    "printed instead of the one-row table; with json it is added as analysis_table.",
)
NORMS_OPTION = typer.Option(
    None,
    "--norms",
    help="Ceph: CSV of norms (key, norm_mean, norm_sd, norm_low, norm_high, norm_source, norm_population) "
    "replacing the shipped norms of the analyses by key.",
)


def _check_analysis_options(
    kind: Kind, analysis: list[str] | None, norms: Path | None, *, norms_need_analysis: bool = False
) -> Any:
    """The norms table of ``--norms`` (``None`` without it), after checking ``--analysis``
    and ``--norms`` before any image is analysed: an unknown analysis, either option with
    ``--kind spine``, or (``norms_need_analysis``) ``--norms`` without ``--analysis`` is a
    usage error (exit 2); a bad norms file an error (exit 1)."""
    from cephspine.errors import CephspineError
    from cephspine.geometry.analyses import analysis_name, read_norms

    if (analysis or norms is not None) and kind is not Kind.ceph:
        raise typer.BadParameter(
            "the named analyses are cephalometric; use them with --kind ceph",
            param_hint="--analysis" if analysis else "--norms",
        )
    if norms_need_analysis and norms is not None and not analysis:
        raise typer.BadParameter("the norms are those of the named analyses: add --analysis", param_hint="--norms")
    for name in analysis or ():
        if name.strip().lower() != "all":
            try:
                analysis_name(name)
            except CephspineError as exc:
                raise typer.BadParameter(str(exc), param_hint="--analysis") from None
    if norms is None:
        return None
    try:
        return read_norms(norms)
    except (CephspineError, OSError) as exc:
        _fail(exc, norms)
    return None


def _records(df: Any) -> list[dict[str, Any]]:
    """Rows of ``df`` as JSON-ready dicts (NaN and ``<NA>`` as ``None``)."""
    import math

    import pandas as pd

    out = []
    for r in df.to_dict("records"):
        out.append({k: None if v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v for k, v in r.items()})
    return out


def _analyses_text(tables: Any, names: list[str]) -> str:
    """Each analysis of ``names`` (``"all"``: every one) as its own table of a
    :meth:`~cephspine.Analysis.analyses_dataframe` (measure, value, norm, flag, note), then
    the sources of the norms shown."""
    import pandas as pd

    from cephspine.geometry.analyses import ANALYSES, ANALYSIS_MEASURES, analysis_name, format_measure, format_norm

    every = any(n.strip().lower() == "all" for n in names)
    wanted = set(ANALYSES.values()) if every else {analysis_name(n) for n in names}
    needs = {m.key: m.needs for m in ANALYSIS_MEASURES}
    rows: list[dict[str, Any]] = [
        {str(k): None if pd.isna(v) else v for k, v in r.items()} for r in tables.to_dict("records")
    ]
    parts: list[str] = []
    sources: dict[str, str] = {}
    for shown in (a for a in ANALYSES.values() if a in wanted):
        lines = [["measure", "value", "norm", "flag", "note"]]
        for r in rows:
            if shown != r["analysis"] and shown not in (r["also_in"] or "").split("; "):
                continue
            if r["status"] == "not available":
                note = f"not available: needs {needs[r['key']]}"
            elif r["status"] == "no spacing":
                note = "a distance in mm: needs the pixel spacing (--spacing)"
            elif r["status"] != "ok":
                note = r["note"] or ""
            elif not r["norm_source"]:
                note = "no norm"
            else:
                note = "" if r["flag"] else "the norm has no range: no flag"
            lines.append([r["measure"], format_measure(r["value"], r["unit"]), format_norm(r), r["flag"] or "", note])
            if r["norm_source"]:
                sources[r["norm_source"]] = r["norm_population"] or ""
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines]
        parts.append(f"\n{shown} analysis\n" + "\n".join(text))
    if sources:
        parts.append("\nNorm sources:")
        parts += [f"  {src}" + (f"; {pop}" if pop else "") for src, pop in sources.items()]
    return "\n".join(parts)


LANDMARKS_OPTION = typer.Option(
    None,
    "--landmarks",
    help="CSV of landmarks placed or corrected by a person (columns landmark, x_px, y_px; optionally image), "
    "used instead of detecting them: no model is run.",
)


def _check_landmarks_option(landmarks: Path | None, model: str | None, what: str = "--landmarks") -> None:
    """``--model`` says which detector to run; with supplied landmarks none runs (exit 2)."""
    if landmarks is not None and model is not None:
        raise typer.BadParameter("supplied landmarks are used instead of a model; leave out --model", param_hint=what)


@app.command()
def analyze(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Radiograph: JPEG, PNG, TIFF or DICOM."),
    kind: Kind = typer.Option(Kind.ceph, "--kind", "-k", help="Anatomy: cephalogram or spine."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or directory (default: the shipped one)."),
    landmarks: Path | None = LANDMARKS_OPTION,
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm, overriding the file's."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Add DICOM patient identifiers to the output (off by default)."
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
    analysis: list[str] | None = ANALYSIS_OPTION,
    norms: Path | None = NORMS_OPTION,
    export: ExportFormat | None = typer.Option(
        None,
        "--export",
        help="Also write the analysis to --out in a standard format: csv (the landmark table), coco (COCO "
        "keypoints JSON) or dicom-sr (a DICOM Structured Report of a DICOM image, carrying its patient and "
        "study; needs cephspine[dicom-sr]).",
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="The file --export writes (replaced only on success)."),
) -> None:
    """Landmarks and clinical measures of one radiograph.

    Ceph: the 8 ISBI measures with normal ranges and anatomical types, and with
    --analysis the named analyses (Steiner, Downs, Tweed, Björk–Jarabak, McNamara,
    Holdaway, Burstone–Legan; Ricketts' measures need points the ISBI landmarks lack)
    with norms and flags where a norm ships. Spine: the 3 Cobb angles
    (PT, MT, TL) with end vertebrae and severity.
    """
    import warnings

    from cephspine.analysis import analyze as run
    from cephspine.errors import CephspineError

    user_norms = _check_analysis_options(kind, analysis, norms, norms_need_analysis=True)
    _check_landmarks_option(landmarks, model)
    if export is not None and out is None:
        raise typer.BadParameter("--export writes to a file: add --out PATH", param_hint="--export")
    if out is not None and export is None:
        raise typer.BadParameter("--out is the file of --export: add --export FORMAT", param_hint="--out")

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = run(
                image, kind.value, spacing=spacing, include_identifiers=include_identifiers, landmarks=landmarks,
                detector=None if landmarks is not None else _detector(kind, model, device, end_prior, refine_flip),
            )  # fmt: skip
    except (CephspineError, ValueError, OSError) as exc:
        _fail(exc, image)
        return
    tables = None
    if analysis:
        try:
            tables = a.analyses_dataframe(analysis, norms=user_norms)
        except CephspineError as exc:
            _fail(exc, image)
            return
    if fmt is OutputFormat.json:
        if tables is None:
            typer.echo(a.to_json(indent=1))
        else:
            d = a.to_dict()
            d["analysis_table"] = _records(tables.drop(columns=list(_IDENTITY_COLUMNS)))
            typer.echo(json.dumps(d, indent=1))
    elif fmt is OutputFormat.csv:
        import pandas as pd

        if tables is None:
            escape_frame(pd.DataFrame([a.to_row()])).to_csv(sys.stdout, index=False)
        else:
            escape_frame(tables).to_csv(sys.stdout, index=False)
    else:
        _banner(a.wrong_anatomy, a.kind, a.image)
        typer.echo(repr(a.prediction))
        typer.echo(_measures_text(a))
        if tables is not None:
            typer.echo(_analyses_text(tables, analysis or []))
    _print_warnings(a.warnings)
    _spacing_hint(a, image)
    if export is not None and out is not None:
        from cephspine.exports import export as write_export

        try:
            written = write_export(a, out, export.value, source=image if export is ExportFormat.dicom_sr else None)
        except (CephspineError, ValueError, OSError) as exc:
            _fail(exc, image)
            return
        typer.echo(f"{export.value} export written to {written}", err=True)
    _exit_if_not_a_result(a.wrong_anatomy)


@app.command()
def report(
    image: Path = typer.Argument(..., metavar="IMAGE", help="Radiograph: JPEG, PNG, TIFF or DICOM."),
    out: Path = typer.Option(..., "--out", "-o", help="PDF file to write (replaced only on success)."),
    kind: Kind = typer.Option(Kind.ceph, "--kind", "-k", help="Anatomy: cephalogram or spine."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or directory (default: the shipped one)."),
    landmarks: Path | None = LANDMARKS_OPTION,
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm, overriding the file's."),
    include_identifiers: bool = typer.Option(
        False, "--include-identifiers", help="Print DICOM patient identifiers in the report (off by default)."
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
    norms: Path | None = NORMS_OPTION,
) -> None:
    """Write a PDF report (annotated image, measures with normal ranges, flags) for one radiograph.

    Ceph: a second page holds the named analyses with their norms, flags and sources.
    """
    import warnings

    from cephspine.errors import CephspineError
    from cephspine.reports import report as run

    user_norms = _check_analysis_options(kind, None, norms)

    _check_landmarks_option(landmarks, model)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            a = run(
                image, out, kind=kind.value, spacing=spacing, include_identifiers=include_identifiers,
                landmarks=landmarks, norms=user_norms,
                detector=None if landmarks is not None else _detector(kind, model, device, end_prior, refine_flip),
            )  # fmt: skip
    except (CephspineError, ValueError, OSError) as exc:
        _fail(exc, image)
        return
    _banner(a.wrong_anatomy, a.kind, a.image)
    typer.echo(_measures_text(a))
    _print_warnings(a.warnings)
    _spacing_hint(a, image)
    typer.echo(f"report written to {out}")
    _exit_if_not_a_result(a.wrong_anatomy)


@app.command()
def compare(
    before: Path = typer.Argument(..., metavar="BEFORE", help="The earlier cephalogram: JPEG, PNG, TIFF or DICOM."),
    after: Path = typer.Argument(..., metavar="AFTER", help="A later cephalogram of the same patient."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="PDF report to write: both tracings superimposed and the change tables."
    ),
    landmarks_before: Path | None = typer.Option(
        None,
        "--landmarks-before",
        help="CSV of BEFORE's landmarks placed or corrected by a person (landmark, x_px, y_px), used instead "
        "of detecting them.",
    ),
    landmarks_after: Path | None = typer.Option(None, "--landmarks-after", help="The same for AFTER."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Model for a film without supplied landmarks (default: the shipped one)."
    ),
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm of both films, overriding the files'."),
    fmt: OutputFormat = typer.Option(
        OutputFormat.table,
        "--format",
        "-f",
        help="Output format: table (the measures, then the landmark displacements), csv (the measures) or json (both).",
    ),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """Compare two cephalograms of one patient, superimposed on S–N registered at S.

    Prints every measure before, after and its change, and every landmark's displacement
    in mm (dx along S→N, dy perpendicular to it, positive toward menton); with --out also
    writes a PDF with both tracings superimposed. Both films need a pixel spacing.
    """
    import warnings

    from cephspine.analysis import analyze as run
    from cephspine.comparison import compare as run_compare
    from cephspine.errors import CephspineError

    if landmarks_before is not None and landmarks_after is not None:
        _check_landmarks_option(landmarks_before, model, "--model")
    analyses = []
    try:
        if out is not None:
            from cephspine.reports._pdf import check_target

            check_target(out)
    except CephspineError as exc:
        _fail(exc)
    for image, landmarks in ((before, landmarks_before), (after, landmarks_after)):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                analyses.append(
                    run(
                        image, "ceph", spacing=spacing, landmarks=landmarks,
                        detector=None if landmarks is not None else _detector(Kind.ceph, model, device),
                    )
                )  # fmt: skip
        except (CephspineError, ValueError, OSError) as exc:
            _fail(exc, image)
            return
    try:
        cmp = run_compare(analyses[0], analyses[1])
        if out is not None:
            cmp.to_pdf(out)
    except (CephspineError, ValueError, OSError) as exc:
        _fail(exc)
        return
    measures = cmp.to_dataframe()
    moved = cmp.landmarks_dataframe()
    if fmt is OutputFormat.csv:
        escape_frame(measures).to_csv(sys.stdout, index=False)
    elif fmt is OutputFormat.json:
        typer.echo(json.dumps({"measures": _records(measures), "landmarks": _records(moved)}, indent=1))
    else:
        shown = measures[["key", "analysis", "before", "after", "change", "unit"]]
        typer.echo(f"{analyses[0].image} -> {analyses[1].image}: measures (change = after - before)")
        typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
        typer.echo("\nlandmark displacements, mm (S-N frame: dx along S->N, dy perpendicular, positive toward menton)")
        shown = moved[["landmark", "dx_mm", "dy_mm", "distance_mm"]]
        typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    for a in analyses:
        _print_warnings(a.warnings)
    if out is not None:
        typer.echo(f"report written to {out}")


class Engine(str, Enum):
    local = "local"
    ray = "ray"


@app.command()
def cohort(
    images: Path = typer.Argument(..., exists=True, metavar="FOLDER", help="Folder of radiographs."),
    out: Path | None = typer.Option(
        None,
        "--out",
        "-o",
        help="Results table (.csv or .parquet), written as it goes; a re-run with the same settings resumes.",
    ),
    kind: Kind = typer.Option(Kind.ceph, "--kind", "-k", help="Anatomy: cephalogram or spine."),
    model: str | None = typer.Option(None, "--model", "-m", help="Model name or directory (default: the shipped one)."),
    landmarks_out: Path | None = typer.Option(None, "--landmarks-out", help="Long landmark table (.csv/.parquet)."),
    summary_pdf: Path | None = typer.Option(None, "--summary-pdf", help="Write a cohort summary PDF here."),
    spacing: float | None = typer.Option(None, help="Pixel spacing in mm for every image, overriding the files'."),
    spacing_csv: Path | None = typer.Option(
        None,
        "--spacing-csv",
        help="CSV of pixel spacings per image (image, spacing_mm; or image, row_mm, col_mm; an annotation CSV "
        "with a spacing column works too), overriding the files'; an image it leaves out keeps its file's own.",
    ),
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
    fmt: OutputFormat = typer.Option(
        OutputFormat.table,
        "--format",
        "-f",
        help="Format of the table printed on stdout: table (image, status, measures or Cobb angles, mean "
        "confidence; errors on stderr), csv or json (every column).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
    end_prior: bool = END_PRIOR_OPTION,
    refine_flip: bool = REFINE_FLIP_OPTION,
) -> None:
    """Analyse every radiograph in a folder into one table, one row per image.

    Rows hold the measures (ceph) or Cobb angles (spine), mean confidence, status and error
    message; a bad image becomes an error row, never the end of the run. The table is
    printed; with --out it is also written as it goes, and a re-run of the same command
    resumes (a re-run with other settings is refused), also after Ctrl-C.
    """
    import warnings

    from cephspine.cohorts import cohort as run
    from cephspine.errors import CephspineError, CephspineWarning, CohortIncompleteWarning, CohortInterrupted

    if spacing is not None and spacing_csv is not None:
        raise typer.BadParameter("give --spacing or --spacing-csv, not both", param_hint="--spacing-csv")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                detector = None if end_prior and refine_flip else _detector(kind, model, device, end_prior, refine_flip)
            except KeyboardInterrupt:  # before the cohort started: no output was opened
                typer.echo("interrupted before any image was analysed; nothing was written", err=True)
                raise typer.Exit(130) from None
            df = run(
                images, kind.value, out=out, landmarks_out=landmarks_out, recursive=recursive,
                spacing=spacing_csv if spacing_csv is not None else spacing,
                include_identifiers=include_identifiers, progress=progress, engine=engine.value, workers=workers,
                address=address, model=model if detector is None else None, device=_device(device),
                detector=detector,
            )  # fmt: skip
        if summary_pdf is not None:
            from cephspine.reports import write_cohort_report

            write_cohort_report(df, summary_pdf, kind=kind.value)
    except CohortInterrupted as exc:
        if exc.out is not None:
            typer.echo(
                f"interrupted: {exc.done} of {exc.images} images done, in {exc.out}; "
                "run the same command again to resume",
                err=True,
            )
        elif exc.landmarks_out is not None:
            typer.echo(
                f"interrupted after {exc.analysed} of {exc.images} images; the landmarks of {exc.landmarks_done} "
                f"image(s) are in {exc.landmarks_out}, no table was written (with --out the rows are kept as they "
                "finish and a re-run resumes)",
                err=True,
            )
        else:
            typer.echo(
                f"interrupted after {exc.analysed} of {exc.images} images; nothing was written "
                "(with --out the rows are kept as they finish and a re-run resumes)",
                err=True,
            )
        raise typer.Exit(130) from None
    except (CephspineError, ValueError, OSError, ImportError) as exc:
        _fail(exc)
        return
    incomplete = [str(w.message) for w in caught if issubclass(w.category, CohortIncompleteWarning)]
    ours = (w for w in caught if issubclass(w.category, CephspineWarning))  # not other libraries' notices
    for message in dict.fromkeys(str(w.message) for w in ours if not issubclass(w.category, CohortIncompleteWarning)):
        typer.echo(f"warning: {message}", err=True)
    _cohort_notes(df, kind, out)
    if fmt is OutputFormat.csv:
        escape_frame(df).to_csv(sys.stdout, index=False)
    elif fmt is OutputFormat.json:
        typer.echo(df.to_json(orient="records", indent=1))
    else:
        shown = ["image", "status"]
        from cephspine.geometry.analyses import ANALYSIS_KEYS  # in the files, too many for a terminal

        measures = [c for c in df.columns if c.endswith(("_deg", "_ratio")) or c.endswith("_mm") and "spacing" not in c]
        shown += [c for c in measures if c not in ANALYSIS_KEYS]
        shown += [c for c in ("severity", "mean_confidence") if c in df.columns]
        if len(df):
            typer.echo(df[shown].to_string(index=False, na_rep="", float_format=lambda v: f"{v:.2f}"))
        n_err = int((df["status"] == "error").sum()) if len(df) else 0
        n_wrong = int((df["status"] == "wrong_anatomy").sum()) if len(df) else 0
        wrong = f", {n_wrong} of the wrong anatomy (status wrong_anatomy: no results)" if n_wrong else ""
        typer.echo(f"{len(df)} images: {len(df) - n_err - n_wrong} ok, {n_err} error(s){wrong}")
        for _, r in df[df["status"] == "error"].iterrows():
            typer.echo(_error_line(str(r["error"]), str(r["image"]), about_file=True), err=True)
        if out is not None:
            typer.echo(f"results in {out}")
    if incomplete:
        for message in incomplete:
            typer.echo(f"error: {message}", err=True)
        raise typer.Exit(1)


def _cohort_notes(df: Any, kind: Kind, out: Path | None) -> None:
    """On stderr: how many rows a resumed run kept, and (ceph) how many images have no
    pixel spacing, once for the run."""
    counts = df.attrs.get("cohort", {})
    if counts.get("reused"):
        typer.echo(
            f"resumed {out}: {counts['reused']} row(s) kept from an earlier run, {counts['analysed']} image(s) "
            "analysed now",
            err=True,
        )
    if kind is Kind.ceph and len(df):
        lacking = int(((df["status"] != "error") & df["spacing_row_mm"].isna()).sum())
        if lacking:
            typer.echo(
                f"warning: {lacking} of {len(df)} images have no pixel spacing, so their measures in mm (MW and the "
                "analyses' distances) are empty; give it with --spacing MM (every image) or --spacing-csv FILE "
                "(image, spacing_mm)",
                err=True,
            )


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
    ids: str | None = typer.Option(
        None,
        help="Image ids: a range (121-150), a comma-separated list (001,005) or both (001-003,010) (default: all).",
    ),
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
            write_frame(ev.per_image(), csv, "per-landmark errors")
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    if fmt is OutputFormat.csv:
        escape_frame(table).to_csv(sys.stdout)
    elif fmt is OutputFormat.json:
        typer.echo(json.dumps(json.loads(table.to_json(orient="index")), indent=1))
    else:
        typer.echo(f"{len(ev.ids)} images, truth: {truth}")
        typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    _print_warnings(ev.warnings)  # e.g. images the model was trained on


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
    ids: str | None = typer.Option(
        None, help="Comma-separated image file names, e.g. a.jpg,b.jpg (no ranges; default: all)."
    ),
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
    _print_warnings(ev.warnings)  # e.g. images the model was trained on
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


_ANNOTATIONS_HELP = "Annotations: COCO keypoints .json or .csv (image, landmark, x_px, y_px)."
_LANDMARK_SPACING_HELP = (
    "Pixel spacing in mm for the images that have none in the annotations (spacing_mm or row_mm, col_mm "
    "columns); without either, the image file's own (DICOM) is used."
)


@train_app.command("landmarks")
def train_landmarks_cmd(
    images: Path = typer.Option(..., exists=True, file_okay=False, help="Folder of the annotated images."),
    annotations: Path = typer.Option(..., exists=True, dir_okay=False, help=_ANNOTATIONS_HELP),
    out: Path = typer.Option(..., help="Model directory to write (checkpoints go to OUT/training)."),
    init: str | None = typer.Option(
        None, help="Start from this model's weights ('ceph' or a model directory; default: random weights)."
    ),
    epochs: int = typer.Option(40, help="Coarse-stage epochs."),
    steps: int = typer.Option(1500, help="Refinement-stage steps."),
    spacing: float | None = typer.Option(None, help=_LANDMARK_SPACING_HELP),
    holdout: float = typer.Option(0.2, help="Share of the images held out for the card's accuracy (at least one)."),
    seed: int = typer.Option(0, help="Seed of the held-out split."),
    name: str = typer.Option("custom", help="The model's name in its card."),
    threads: int | None = typer.Option(None, help="Torch CPU threads (default: torch's)."),
) -> None:
    """Train a model on your own landmark set (any number of named landmarks)."""
    import logging

    from cephspine.errors import CephspineError
    from cephspine.training.custom import train_landmarks

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        model_dir = train_landmarks(
            images,
            annotations,
            out,
            spacing=spacing,
            init=init,
            epochs=epochs,
            steps=steps,
            holdout=holdout,
            seed=seed,
            name=name,
            threads=threads,
        )
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    m = json.loads((model_dir / "card.json").read_text(encoding="utf-8"))["metrics"]
    typer.echo(
        f"held-out ({m['n_images']} images): MRE {m['mre_mm']:.2f} mm, SDR 2 mm {m['sdr_2mm_pct']:.1f} %, "
        f"4 mm {m['sdr_4mm_pct']:.1f} %"
    )
    typer.echo(f"model written to {model_dir}")


@evaluate_app.command("landmarks")
def evaluate_landmarks_cmd(
    model: str = typer.Option(..., "--model", "-m", help="Model name or directory."),
    annotations: Path = typer.Option(..., exists=True, dir_okay=False, help=_ANNOTATIONS_HELP),
    images: Path = typer.Option(..., exists=True, file_okay=False, help="Folder of the annotated images."),
    spacing: float | None = typer.Option(None, help=_LANDMARK_SPACING_HELP),
    csv: Path | None = typer.Option(None, help="Write per-landmark errors of every image here."),
    fmt: OutputFormat = typer.Option(OutputFormat.table, "--format", "-f", help="Output format of the summary."),
    device: str = typer.Option("auto", help="'auto', 'cpu' or 'cuda'."),
) -> None:
    """Print MRE, SD and SDR at 2/2.5/3/4 mm, overall and per landmark, against your annotations."""
    import warnings

    from cephspine.detector import Detector
    from cephspine.errors import CephspineError
    from cephspine.training.custom import evaluate_landmarks, load_landmark_set

    try:
        ls = load_landmark_set(images, annotations, spacing=spacing)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ev = evaluate_landmarks(Detector.from_pretrained(model, device=_device(device)), ls)
        table = ev.table()
        if csv is not None:
            write_frame(ev.per_image(), csv, "per-landmark errors")
    except (CephspineError, OSError) as exc:
        _fail(exc)
        return
    _print_warnings(ev.warnings)  # e.g. images the model was trained on
    if fmt is OutputFormat.csv:
        escape_frame(table).to_csv(sys.stdout, index=False)
    elif fmt is OutputFormat.json:
        typer.echo(json.dumps(json.loads(table.to_json(orient="records")), indent=1))
    else:
        typer.echo(f"{len(ev.ids)} images, truth: {annotations.name}")
        typer.echo(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))


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
