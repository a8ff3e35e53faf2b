"""summary.json's schema: every documented section has a model, and models are strict."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from braincam.io import dumps_json, write_json
from braincam.summary_schema import (
    SECTIONS,
    SchemaError,
    update_summary,
    validate_section,
    validate_summary,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "summary-schema.md"

PREPARE = {
    "source": {"type": "bids", "path": "/data/bids"},
    "label_column": "group",
    "classes": ["old", "young"],
    "subjects": ["sub-01"],
    "n_subjects": {"ingested": 1, "computed": 1, "skipped": 0, "failed": 0},
    "participants": [
        {
            "participant_id": "sub-01",
            "label": "old",
            "session": None,
            "run": None,
            "dwi": "/data/bids/sub-01/dwi/sub-01_dwi.nii.gz",
            "anat": None,
            "status": "computed",
            "fa": "derivatives/sub-01_FA.nii.gz",
            "split": "train",
            "slices": 16,
            "ground_truth_mask": None,
            "mask_slices": None,
            "seconds": 1.2,
            "peak_rss_mib": 300.5,
        }
    ],
    "splits": {"train": ["sub-01"], "val": [], "test": []},
    "slices_per_split": {"train": 16},
    "mask_slices": {},
    "slice_store": {"path": "slices", "n": 16},
    "failures": [],
    "outputs": {"derivatives": "derivatives", "splits": "splits.tsv", "slices": "slices"},
    "parameters": {"label": "group", "size": 64, "manifest": None},
    "timing": {"total": 3.5},
    "versions": {"braincam": "0.1"},
}
TRAINING = {
    "r": {
        "model": "tinycnn-gap",
        "run_dir": "/x/runs/r",
        "best_epoch": 2,
        "epochs_run": 3,
        "best_val_loss": 0.4,
        "best_val_acc": 0.9,
        "classes": ["a", "b"],
        "subjects": {"train": 6, "val": 2, "test": 2},
        "seed": 0,
    }
}
SPLIT_EVAL = {
    "loss": 0.3,
    "slice_accuracy": 0.9,
    "auc": 0.95,
    "subject_accuracy": 1.0,
    "subjects": 2,
    "subjects_correct": 2,
    "slices": 18,
}
EVALUATION = {"r": {"model": "tinycnn-gap", "test": SPLIT_EVAL}}
COMPARISON = [
    {
        "run": "r",
        "model": "tinycnn-gap",
        "best_epoch": 2,
        "val_slice_acc": 0.9,
        "val_subject_acc": None,
        "val_auc": 0.9,
        "test_slice_acc": 0.8,
        "test_subject_acc": 1.0,
        "test_auc": 0.9,
    }
]
DEMO = {"report": "report.html", "runs": ["r"], "methods": ["cam"], "seconds": 200.0}


def _documented_sections() -> list[str]:
    rows = re.findall(r"^\| `(\w+)` \|", DOCS.read_text(), flags=re.MULTILINE)
    assert rows, "docs/summary-schema.md lists no sections"
    return rows


def test_every_documented_section_has_a_model() -> None:
    assert sorted(_documented_sections()) == sorted(SECTIONS)


@pytest.mark.parametrize(
    ("section", "data", "path"),
    [
        ("prepare", PREPARE, ("participants", 0, "seconds")),
        ("training", TRAINING, ("r", "best_val_acc")),
        ("evaluation", EVALUATION, ("r", "test", "auc")),
        ("comparison", COMPARISON, (0, "test_auc")),
        ("demo", DEMO, ("seconds",)),
    ],
)
def test_sections_are_strict(section: str, data: object, path: tuple) -> None:
    assert validate_section(section, data) is data
    for bad in ("0.9", "nan", "None", [0.5], {"v": 0.5}):
        spoiled = copy.deepcopy(data)
        node = spoiled
        for part in path[:-1]:
            node = node[part]  # type: ignore[index]
        node[path[-1]] = bad  # type: ignore[index]
        with pytest.raises(SchemaError, match=section):
            validate_section(section, spoiled)
    with pytest.raises(SchemaError, match="no section"):
        validate_section("unknown", data)


def test_cam_evaluation_verdicts_must_be_booleans(cam_evaluation_summary: dict) -> None:
    """Every part of a real cam_evaluation section validates; a stringified verdict does not."""
    assert validate_section("cam_evaluation", {"r": cam_evaluation_summary})
    for where in (
        ("sanity", "cam", "flagged"),
        ("perturbation", "positive_control"),
        ("perturbation", "negative_control"),
        ("perturbation", "methods", "cam", "comparison", "hurts_more"),
        ("verdicts", "cam", "faithful", "verdict"),
    ):
        spoiled = copy.deepcopy(cam_evaluation_summary)
        node = spoiled
        for part in where[:-1]:
            node = node[part]
        for bad in ("False", "True", np.bool_(False), 0):
            node[where[-1]] = bad
            with pytest.raises(SchemaError):
                validate_section("cam_evaluation", {"r": spoiled})
    for where in (
        ("verdicts", "cam", "localizes", "figure"),
        ("perturbation", "methods", "cam", "comparison", "ci_low"),
        ("sanity", "cam", "final_spearman"),
    ):
        spoiled = copy.deepcopy(cam_evaluation_summary)
        node = spoiled
        for part in where[:-1]:
            node = node[part]
        node[where[-1]] = "0.5"
        with pytest.raises(SchemaError):
            validate_section("cam_evaluation", {"r": spoiled})


def test_lesion_hit_rates_are_typed(cam_evaluation_summary: dict) -> None:
    """The lesion_hits section of a real evaluation validates; a count or rate of the wrong type,
    a missing field or an unknown one does not."""
    section = cam_evaluation_summary["lesion_hits"]
    assert section["levels"]["slice"]["cam"]["all"]["n_lesions"] > 0
    bad_values = (
        ("n_lesions", 3.0),
        ("n_lesions", "3"),
        ("n_hit", True),
        ("hit_rate", "0.5"),
        ("hit_rate", "nan"),
        ("high_mm", "inf"),
        ("low_mm", None),
    )
    for field, bad in bad_values:
        spoiled = copy.deepcopy(cam_evaluation_summary)
        spoiled["lesion_hits"]["levels"]["slice"]["cam"]["all"][field] = bad
        with pytest.raises(SchemaError, match=field):
            validate_section("cam_evaluation", {"r": spoiled})
    spoiled = copy.deepcopy(cam_evaluation_summary)
    del spoiled["lesion_hits"]["levels"]["slice"]["cam"]["3-6mm"]["n_hit"]
    with pytest.raises(SchemaError, match="n_hit"):
        validate_section("cam_evaluation", {"r": spoiled})
    spoiled = copy.deepcopy(cam_evaluation_summary)
    spoiled["lesion_hits"]["levels"]["slice"]["cam"]["all"]["peak"] = 1.0
    with pytest.raises(SchemaError, match="peak"):
        validate_section("cam_evaluation", {"r": spoiled})
    spoiled = copy.deepcopy(cam_evaluation_summary)
    spoiled["lesion_hits"]["bins_mm"] = "3,6,10"
    with pytest.raises(SchemaError, match="bins_mm"):
        validate_section("cam_evaluation", {"r": spoiled})


def test_whole_summary_of_every_section_validates(cam_evaluation_summary: dict) -> None:
    summary = {
        "prepare": PREPARE,
        "training": TRAINING,
        "evaluation": EVALUATION,
        "comparison": COMPARISON,
        "cam_evaluation": {"r": cam_evaluation_summary},
        "demo": DEMO,
    }
    assert set(summary) == set(SECTIONS)  # the test covers every section
    parsed = validate_summary(json.loads(dumps_json(summary)))
    assert parsed.cam_evaluation["r"].verdicts["cam"].faithful.verdict in (True, False, None)


def test_update_summary_validates_before_writing(tmp_path: Path) -> None:
    update_summary(tmp_path, "demo", DEMO)
    before = (tmp_path / "summary.json").read_text()
    with pytest.raises(SchemaError, match="demo"):
        update_summary(tmp_path, "demo", {**DEMO, "seconds": "200"})
    assert (tmp_path / "summary.json").read_text() == before  # nothing half-written
    # numpy scalars are converted faithfully (a bool stays a bool), never stringified
    update_summary(tmp_path, "demo", {**DEMO, "seconds": np.float64(3.0)})
    assert json.loads((tmp_path / "summary.json").read_text())["demo"]["seconds"] == 3.0


def test_json_writer_never_stringifies(tmp_path: Path) -> None:
    text = dumps_json({"flag": np.bool_(False), "x": float("nan"), "n": np.int64(2)})
    assert json.loads(text) == {"flag": False, "x": None, "n": 2}
    with pytest.raises(TypeError, match=r"\$\.a\.b"):
        write_json(tmp_path / "x.json", {"a": {"b": object()}})
    assert not (tmp_path / "x.json").exists()
    root = Path(__file__).resolve().parents[1]
    fallback = "default=" + "str"  # spelled apart so this file is not an offender itself
    offenders = [
        p
        for folder in ("src", "tests", "benchmarks")
        for p in (root / folder).rglob("*.py")
        if fallback in p.read_text()
    ]
    assert offenders == []


def test_stringified_values_are_refused_at_any_depth() -> None:
    """ "False", "nan", "None" ... anywhere in a section (nested dicts and lists included) are a
    value that went through str() on its way to JSON; the message names where."""
    prepare = copy.deepcopy(PREPARE)
    prepare["parameters"] = {"deep": {"list": [1, {"flag": "False"}]}}
    with pytest.raises(SchemaError, match=r"\.deep\.list\[1\]\.flag: 'False' is a stringified"):
        validate_section("prepare", prepare)
    for text in ("True", "nan", "NaN", "inf", "-inf", "None"):
        prepare["parameters"] = {"x": [text]}
        with pytest.raises(SchemaError, match=r"\.x\[0\]: '.*' is a stringified value"):
            validate_section("prepare", prepare)
    # a whole model's input stringified: named as "value"
    from braincam.summary_schema import DemoSection

    with pytest.raises(ValueError, match=r"value: 'None' is a stringified value"):
        DemoSection.model_validate("None")
    prepare["parameters"] = {"x": ["false", "none", "Falsey", "", "0"]}  # ordinary text passes
    assert validate_section("prepare", prepare) is prepare


def test_table_rows_take_only_scalar_extra_columns() -> None:
    from braincam.summary_schema import LocalizationRow

    base = {"model": "m", "method": "cam", "level": "slice", "n_scored": 3, "n_excluded": 0}
    for value in (0.5, 1, True, "x", None):
        assert LocalizationRow.model_validate({**base, "extra": value}).model_extra == {
            "extra": value
        }
    for value in ([0.5], {"a": 1}):
        with pytest.raises(ValueError, match="column 'extra' must be a scalar"):
            LocalizationRow.model_validate({**base, "extra": value})


def test_validators_name_the_section_and_the_field() -> None:
    from braincam.summary_schema import validate_cam_evaluation

    with pytest.raises(SchemaError, match=r"^summary.json has no section 'nope' \(sections: prep"):
        validate_section("nope", {})
    with pytest.raises(SchemaError, match=r"^summary.json section 'demo' does not match") as err:
        validate_section("demo", {**DEMO, "runs": "r"})
    assert "runs" in str(err.value)
    with pytest.raises(SchemaError, match=r"^cam_evaluation does not match its schema:\n"):
        validate_cam_evaluation({"model": "m"})
    minimal = {"model": "m", "split": "test", "config": {"threshold": 0.2}, "seconds": {}}
    parsed_eval = validate_cam_evaluation(minimal)
    assert parsed_eval.model == "m" and parsed_eval.config == {"threshold": 0.2}
    assert parsed_eval.sanity is None
    with pytest.raises(
        SchemaError, match=r"^summary.json does not match its schema:\n(.|\n)*demo.seconds"
    ):
        validate_summary({"demo": {**DEMO, "seconds": "1"}})
    parsed = validate_summary({"demo": DEMO})
    assert parsed.demo is not None and parsed.demo.runs == ["r"] and parsed.training is None


def test_load_summary_reads_validates_and_names_the_file(tmp_path: Path) -> None:
    from braincam.summary_schema import Summary, load_summary

    assert load_summary(tmp_path / "missing.json") == Summary()
    path = tmp_path / "summary.json"
    write_json(path, {"demo": DEMO})
    assert load_summary(path).demo.seconds == 200.0
    write_json(path, {"demo": {**DEMO, "seconds": "200"}})
    with pytest.raises(SchemaError, match=rf"^{re.escape(str(path))}: summary.json does not"):
        load_summary(path)


def test_update_summary_keeps_the_other_sections_and_converts_numpy(tmp_path: Path) -> None:
    assert update_summary(tmp_path, "demo", DEMO) == tmp_path / "summary.json"
    update_summary(tmp_path, "comparison", COMPARISON)
    update_summary(tmp_path, "demo", {**DEMO, "seconds": np.float32(5.0), "runs": ("a", "b")})
    data = json.loads((tmp_path / "summary.json").read_text())
    assert set(data) == {"demo", "comparison"}
    assert data["comparison"] == json.loads(dumps_json(COMPARISON))
    assert data["demo"]["seconds"] == 5.0 and data["demo"]["runs"] == ["a", "b"]
