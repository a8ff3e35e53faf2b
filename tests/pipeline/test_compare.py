"""``braincam compare``: two experiments on one cohort side by side; the table's numbers are the
summaries' (and the runs' timing files'), every row has a unit, other cohorts are refused."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from braincam.errors import InputError
from braincam.io import write_json
from braincam.pipeline.compare import CohortMismatch, compare_experiments
from braincam.report.audit import remote_resources
from braincam.summary_schema import validate_summary
from builders.cli import run_cli

SUBJECTS = {"sub-01": "old", "sub-02": "young", "sub-03": "old", "sub-04": "young"}
SPLITS = {"train": ["sub-01", "sub-02"], "val": [], "test": ["sub-03", "sub-04"]}
SYNTH = {"subjects": 4, "seed": 0, "effect_region": "frontal-wm", "voxel_size": 3.0}


def _participant(pid: str, label: str, rss: float) -> dict[str, Any]:
    return {
        "participant_id": pid, "label": label, "session": None, "run": None, "dwi": None,
        "anat": None, "status": "computed", "fa": None,
        "split": next(s for s, ids in SPLITS.items() if pid in ids), "slices": 16,
        "ground_truth_mask": None, "mask_slices": None, "seconds": 10.0, "peak_rss_mib": rss,
    }  # fmt: skip


def _loc(method: str, level: str, pg: float, mass: float, fraction: float) -> dict[str, Any]:
    return {
        "model": "m", "method": method, "level": level, "n_scored": 1, "n_excluded": 1,
        "pointing_game": pg, "relevance_mass": mass, "mask_fraction": fraction,
    }  # fmt: skip


def _summary(volume: bool, figures: dict[str, float]) -> dict[str, Any]:
    """A schema-valid summary.json of a one-model experiment on the cohort above."""
    store = {"path": "volumes" if volume else "slices", "n": 4}
    prepare = {
        "source": {"type": "bids", "path": "/x/bids"},
        "label_column": "group",
        "classes": ["old", "young"],
        "subjects": list(SUBJECTS),
        "n_subjects": {"ingested": 4, "computed": 4, "skipped": 0, "failed": 0},
        "participants": [
            _participant(p, label, figures["prep_rss"] + i)
            for i, (p, label) in enumerate(SUBJECTS.items())
        ],
        "splits": SPLITS,
        "slices_per_split": {"test": 2 if volume else 32},
        "mask_slices": {},
        "slice_store": None if volume else store,
        "volume_store": store if volume else None,
        "failures": [],
        "outputs": {},
        "parameters": {"representation": "volume" if volume else "slices"},
        "timing": {"dti_seconds": 50.0, "total_seconds": figures["prep_s"]},
        "versions": {"braincam": "0.1"},
    }
    test = {
        "loss": 0.5, "slice_accuracy": figures["slice_acc"], "auc": figures["auc"],
        "subject_accuracy": figures["subject_acc"], "subjects": 2, "subjects_correct": 1,
        "slices": 2 if volume else 32,
    }  # fmt: skip
    level = "volume" if volume else "slice"
    cams = {
        "model": "m",
        "split": "test",
        "config": {},
        "localization": [
            _loc("gradcam", level, figures["pg"], figures["mass"], figures["fraction"]),
            _loc("baseline:uniform", level, 0.01, figures["fraction"], figures["fraction"]),
        ],
        "seconds": {"localization": figures["loc_s"], "regions": 4.0},
    }
    summary = {
        "prepare": prepare,
        "evaluation": {"m": {"model": "m", "test": test}},
        "cam_evaluation": {"m": cams},
    }
    validate_summary(summary)  # hand-made, but exactly what the steps would have to write
    return summary


FIGURES_A = {
    "prep_rss": 800.0, "prep_s": 300.0, "slice_acc": 0.8125, "auc": 0.9, "subject_acc": 1.0,
    "pg": 0.25, "mass": 0.06, "fraction": 0.02, "loc_s": 7.0,
}  # fmt: skip
FIGURES_B = {
    "prep_rss": 900.0, "prep_s": 310.0, "slice_acc": 0.5, "auc": 0.75, "subject_acc": 0.5,
    "pg": 0.5, "mass": 0.012, "fraction": 0.001, "loc_s": 2.5,
}  # fmt: skip


def _experiment(
    root: Path, summary: dict[str, Any], epochs: list[float], explain: float, synth: dict
) -> Path:
    root.mkdir(parents=True)
    write_json(root / "summary.json", summary)
    write_json(root / ".synth-params.json", synth)
    run = root / "runs" / "m"
    (run / "heatmaps" / "test").mkdir(parents=True)
    pd.DataFrame(
        {
            "epoch": range(len(epochs)),
            "train_images": 32,
            "train_seconds": [s - 1 for s in epochs],
            "epoch_seconds": epochs,
            "images_per_s": [32 / (s - 1) for s in epochs],
            "peak_gpu_mb": None,
            "peak_rss_mib": [1000.0 + 10 * i for i in range(len(epochs))],
        }
    ).to_csv(run / "throughput.tsv", sep="\t", index=False)
    write_json(
        run / "heatmaps" / "test" / "meta.json",
        {"methods": ["gradcam"], "seconds": explain, "peak_rss_mib": 1234.5},
    )
    return root


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    a = _experiment(tmp_path / "a", _summary(False, FIGURES_A), [5.0, 7.0, 9.0], 12.0, SYNTH)
    b = _experiment(tmp_path / "b", _summary(True, FIGURES_B), [3.0, 4.0], 1.5, SYNTH)
    return a, b


def _value(table: pd.DataFrame, quantity: str, column: str) -> Any:
    row = table[table["quantity"] == quantity]
    assert len(row) == 1, quantity
    return row[column].iloc[0]


def test_the_table_holds_the_summaries_figures_with_units(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = pair
    result = compare_experiments(a, b, output=tmp_path / "cmp.html")
    assert set(result.paths) == {"html", "tsv", "json"}
    table = pd.read_csv(result.paths["tsv"], sep="\t")
    assert list(table.columns) == ["section", "quantity", "unit", "A:m", "B:m"]
    assert result.sides["A"]["representation"] == "slices"
    assert result.sides["B"]["representation"] == "volume"
    for column, fig in (("A:m", FIGURES_A), ("B:m", FIGURES_B)):
        assert _value(table, "test subject accuracy", column) == fig["subject_acc"]
        assert _value(table, "test sample accuracy (slice, or volume)", column) == fig["slice_acc"]
        assert _value(table, "test AUC (samples)", column) == fig["auc"]
        level = "volume" if column == "B:m" else "slice"
        where = f"gradcam, {level}s"
        assert _value(table, f"strict pointing game ({where})", column) == fig["pg"]
        assert _value(table, f"relevance mass ({where})", column) == fig["mass"]
        assert _value(table, f"relevance mass ÷ mask fraction ({where})", column) == pytest.approx(
            fig["mass"] / fig["fraction"]
        )
        assert _value(table, f"mask fraction ({level}s)", column) == fig["fraction"]  # one row
        assert _value(table, f"maps scored ({level}s)", column) == 1
        baseline = f"relevance mass ÷ mask fraction (baseline:uniform, {level}s)"
        assert _value(table, baseline, column) == pytest.approx(1.0)
        assert _value(table, "preparation (whole cohort)", column) == fig["prep_s"]
        assert _value(table, "evaluate-cams (every family)", column) == fig["loc_s"] + 4.0
        assert (
            _value(table, "preparation: largest subject's peak RSS", column) == fig["prep_rss"] + 3
        )
    # The other level's rows exist only for the side that has them (empty for the other).
    assert pd.isna(_value(table, "strict pointing game (gradcam, volumes)", "A:m"))
    # Time and memory from the runs' own records.
    assert _value(table, "training (all epochs, validation included)", "A:m") == 21.0
    assert _value(table, "training (all epochs, validation included)", "B:m") == 7.0
    assert _value(table, "epochs run", "A:m") == 3
    assert _value(table, "training per epoch", "B:m") == pytest.approx(3.5)
    assert _value(table, "explain (test split, every method)", "A:m") == 12.0
    assert _value(table, "explain (test split, every method)", "B:m") == 1.5
    assert _value(table, "peak RSS by the end of training (process)", "A:m") == 1020.0
    assert pd.isna(_value(table, "peak GPU memory in training", "A:m"))
    # Every figure has its unit.
    units = table["unit"]
    assert units.notna().all() and (units.str.len() > 0).all()
    assert set(table.loc[table["section"] == "memory", "unit"]) == {"MiB"}
    # JSON: the same rows; the cohort check recorded.
    data = json.loads(result.paths["json"].read_text())
    assert data["rows"] == json.loads(table.to_json(orient="records"))
    assert data["cohort"] == {
        "same": True, "differences": [], "forced": False, "subjects": 4, "test_subjects": 2,
        "synth": SYNTH,
    }  # fmt: skip
    html = result.paths["html"].read_text()
    assert remote_resources(html) == []
    assert "0.8125" in html and "Same cohort: 4 subjects, 2 in the test split" in html


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (lambda s, y: s["prepare"]["participants"][0].update(label="young"), "labels differ"),
        (lambda s, y: s["prepare"]["participants"].pop(), "subjects differ: 1 only in A (sub-04)"),
        (lambda s, y: s["prepare"]["splits"].update(test=["sub-03"]), "test splits differ"),
        (lambda s, y: y.update(effect_region="random"), "effect_region: 'frontal-wm' vs 'random'"),
    ],
)
def test_another_cohort_is_refused_unless_forced(
    tmp_path: Path, spoil: Any, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    summary, synth = copy.deepcopy(_summary(True, FIGURES_B)), dict(SYNTH)
    spoil(summary, synth)
    a = _experiment(tmp_path / "a", _summary(False, FIGURES_A), [5.0], 1.0, SYNTH)
    b = _experiment(tmp_path / "b", summary, [5.0], 1.0, synth)
    with pytest.raises(CohortMismatch, match="not on the same cohort") as caught:
        compare_experiments(a, b, output=tmp_path / "cmp.html")
    assert message in str(caught.value)
    assert not (tmp_path / "cmp.html").exists()
    cli = run_cli(["compare", str(a), str(b), "--html", str(tmp_path / "c.html")], capsys)
    assert cli.code == 2 and message in cli.text and cli.exc is None
    forced = compare_experiments(a, b, output=tmp_path / "cmp.html", force=True)
    assert forced.cohort["forced"] and any(message in d for d in forced.cohort["differences"])
    assert "NOT the same cohort" in forced.paths["html"].read_text()


def test_the_cli_writes_the_three_files(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = pair
    cli = run_cli(["compare", str(a), str(b), "--html", str(tmp_path / "out" / "x.html")], capsys)
    assert cli.code == 0, cli.text
    for suffix in (".html", ".tsv", ".json"):
        assert (tmp_path / "out" / f"x{suffix}").is_file()
    table = pd.read_csv(tmp_path / "out" / "x.tsv", sep="\t")
    assert _value(table, "test AUC (samples)", "B:m") == FIGURES_B["auc"]


def test_a_directory_without_summary_is_an_input_error(
    pair: tuple[Path, Path], tmp_path: Path
) -> None:
    a, _ = pair
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no summary\.json"):
        compare_experiments(a, tmp_path / "empty", output=tmp_path / "cmp.html")
