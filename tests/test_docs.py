"""What the README and the docs promise matches the package: the shipped models' numbers,
the named analyses and their norms, the test suite's data, the tutorial's files."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _text(relative: str) -> str:
    return (ROOT / relative).read_text(encoding="utf-8")


def _and(names: list[str]) -> str:
    """``"A, B and C"``."""
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


# --------------------------------------------------------------------------- the spine model


def test_spine_cobb_smape_and_its_target_are_the_model_cards() -> None:
    card = json.loads(_text("cephspine/weights/spine/card.json"))
    smape = f"{card['metrics']['cobb_smape_pct']:.1f}"
    m = re.search(r"Cobb SMAPE ([\d.]+) % meets its target \((\d+) %\)", card["status_note"])
    assert m is not None and m.group(1) == smape
    target = m.group(2)
    status_box = _text("docs/models/spine.md").split("\n\n`Detector")[0]  # the status, not the history
    texts = {
        "README.md": _text("README.md"),
        "docs/index.md": _text("docs/index.md"),
        "docs/analysis.md": _text("docs/analysis.md"),
        "docs/models/spine.md (status)": status_box,
        "MODEL_CARD.md": _text("cephspine/weights/spine/MODEL_CARD.md"),
    }
    for name, text in texts.items():
        values = re.findall(r"Cobb SMAPE\s+\**(\d+\.\d) ?%", text)
        targets = re.findall(r"(?:SMAPE|target) ≤ (\d+) %", text) + re.findall(r"meets its target \((\d+) %\)", text)
        assert values and set(values) == {smape}, (name, values)
        assert targets and set(targets) == {target}, (name, targets)


# --------------------------------------------------------------------------- named analyses


def test_named_analyses_and_their_norms_are_listed_as_shipped() -> None:
    from cephspine.geometry.analyses import ANALYSES, ANALYSIS_MEASURES, shipped_norms

    normed = set(shipped_norms()["key"])
    with_norms, values_only, no_values = [], [], []
    for shown in ANALYSES.values():
        mine = [m for m in ANALYSIS_MEASURES if m.analysis == shown and m.available]
        if not mine:
            no_values.append(shown)
        elif any(m.key in normed for m in mine):
            with_norms.append(shown)
        else:
            values_only.append(shown)
    assert no_values == ["Ricketts"]  # every one of its measures needs a point the ISBI set lacks
    for name in ("README.md", "docs/index.md"):
        text = " ".join(_text(name).split())
        assert f"{_and(with_norms)} with sourced norms for some of their measures" in text, name
        assert f"{_and(values_only)} as values only" in text, name
        assert f"{_and(no_values)} listed without values" in text, name
    table = _text("docs/analyses/index.md")
    for shown in values_only:
        assert re.search(rf"^\| \[{shown}\]\([^)]*\) \| [^|]+ \| — \(values only\) \|", table, re.M), shown
    for shown in with_norms:
        row = re.search(rf"^\| \[{shown}\]\([^)]*\) \| [^|]+ \| ([^|]+) \|", table, re.M)
        assert row is not None and "values only" not in row.group(1), shown


# --------------------------------------------------------------------------- the test suite


def test_tests_without_the_training_data_say_how_many_and_how_to_point_at_it(tmp_path: Path) -> None:
    nowhere = tmp_path / "nowhere"
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/io/test_datasets.py", "-k", "shared"],
        cwd=ROOT,
        env={**os.environ, "CEPHSPINE_DATA": str(nowhere)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"2 test(s) skipped: they need the ISBI 2015 and AASCE training data, looked for at {nowhere}" in r.stdout
    assert "SKIPPED [1] tests/io/test_datasets.py:" in r.stdout  # -ra: each skip with its reason
    assert "set CEPHSPINE_DATA=" in r.stdout


def test_the_data_folder_follows_cephspine_data_and_every_user_is_marked(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import shared_data_folder

    monkeypatch.setenv("CEPHSPINE_DATA", "/data/here")
    assert shared_data_folder() == Path("/data/here")
    monkeypatch.delenv("CEPHSPINE_DATA")
    assert shared_data_folder().resolve() == (ROOT.parent / "shared" / "data").resolve()
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "-m", "shared_data",
         "tests/test_supplied.py"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert "test_the_isbi_measures_of_supplied_landmarks_are_the_geometry_s" in r.stdout  # uses the fixture only


def test_ci_runs_the_readme_test_command() -> None:
    readme = _text("README.md")
    assert "CEPHSPINE_DATA=/path/to/data python -m pytest -q" in readme and "bash .ci/run" in readme
    pytest_lines = [line for line in _text(".ci/run").splitlines() if "-m pytest" in line]
    assert pytest_lines == ['"$py" -m pytest -q']


# --------------------------------------------------------------------------- the tutorial


def test_the_tutorial_s_five_csv_is_made_by_the_shipped_script(shared_data: Path, tmp_path: Path) -> None:
    tutorial = _text("docs/tutorials/own-landmarks.md")
    assert "$ python examples/isbi_annotations.py --data $ISBI --out five.csv" in tutorial
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "isbi_annotations.py"), "--data", str(shared_data / "isbi2015")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "30 rows (6 images x 5 landmarks) written to five.csv" in r.stdout
    written = (tmp_path / "five.csv").read_text().splitlines()
    shown = tutorial.split("```text\n", 1)[1].split("```", 1)[0].splitlines()
    assert written[0] == shown[0] == "image,landmark,x_px,y_px,spacing_mm"
    assert written[1:3] == shown[1:3]  # the rows the tutorial prints
    assert len(written) == 31 and {line.split(",")[0] for line in written[1:]} == {f"00{i}.jpg" for i in range(1, 7)}
    import cephspine

    ann = cephspine.read_annotations(tmp_path / "five.csv")
    assert ann.names == ("sella", "nasion", "menton", "gonion", "articulare") and len(ann.spacing) == 6


# --------------------------------------------------------------------------- spacing from a ruler


def test_the_ruler_recipe_is_linked_and_its_example_runs() -> None:
    import numpy as np

    page = _text("docs/data-input.md")
    anchor = "#spacing-from-a-ruler-or-the-magnification"
    assert "## Spacing from a ruler or the magnification" in page
    assert f"docs/data-input.md{anchor}" in _text("README.md") and f"]({anchor})" in page
    section = page.split("## Spacing from a ruler or the magnification", 1)[1].split("\n## ", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    names: dict[str, object] = {}
    exec(code.replace('a = cephspine.analyze("film.tif", kind="ceph", spacing=spacing_mm)', ""), names)
    assert np.isclose(names["spacing_mm"], 50 / np.hypot(3, 401))  # about 8 px per mm: 0.125 mm
    assert "Measure across many ticks" in section and "p / M" in section
