"""The evaluation step: run evaluation on a tiny trained run, comparison across runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braincam.errors import InputError
from braincam.pipeline.evaluate import compare_runs, evaluate_run
from braincam.pipeline.train import fit
from builders.store import quick_config, write_store


def test_evaluate_run_writes_files_summary_and_comparison(tmp_path: Path, tiny_zoo) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "runs" / "tiny"
    fit(work, run, model="tiny", config=quick_config(epochs=3), progress=False)
    results = evaluate_run(run, splits=("val", "test"))
    for split in ("val", "test"):
        for name in (
            f"eval_{split}.json",
            f"predictions_{split}.tsv",
            f"eval_{split}_subjects.tsv",
            f"eval_{split}_per_class.tsv",
            f"eval_{split}_confusion.tsv",
        ):
            assert (run / name).is_file(), name
    preds = pd.read_csv(run / "predictions_test.tsv", sep="\t", dtype={"participant_id": str})
    assert len(preds) == 8 and set(preds["participant_id"]) == {"sub-11", "sub-12"}
    assert np.allclose(preds[["prob_young", "prob_old"]].sum(axis=1), 1.0, atol=1e-5)
    assert results["test"]["accuracy"] == pytest.approx((preds["pred"] == preds["target"]).mean())
    subjects = pd.read_csv(run / "eval_test_subjects.tsv", sep="\t")
    assert results["test"]["subject"]["accuracy"] == pytest.approx(subjects["correct"].mean())
    saved = json.loads((run / "eval_test.json").read_text())
    assert saved["subject"]["n"] == 2
    summary = json.loads((work / "summary.json").read_text())
    assert summary["evaluation"]["tiny"]["test"]["subjects"] == 2
    assert "tiny" in summary["training"]

    table = compare_runs([run], tmp_path)
    assert table.loc[0, "test_subject_acc"] == pytest.approx(results["test"]["subject"]["accuracy"])
    md = (tmp_path / "comparison.md").read_text()
    assert md.splitlines()[0].startswith("| model |") and "| tiny |" in md
    assert (tmp_path / "comparison.tsv").is_file()
    assert json.loads((tmp_path / "summary.json").read_text())["comparison"][0]["model"] == "tiny"
    assert not math.isnan(table.loc[0, "val_slice_acc"])


def test_evaluate_refuses_a_changed_split(tmp_path: Path, tiny_zoo) -> None:
    work = write_store(tmp_path / "work")
    run = tmp_path / "run"
    fit(work, run, model="tiny", config=quick_config(epochs=1), progress=False)
    index_path = work / "slices" / "index.tsv"
    index = pd.read_csv(index_path, sep="\t")
    index.loc[index["participant_id"] == "sub-01", "split"] = "test"  # a training subject
    index.to_csv(index_path, sep="\t", index=False)
    with pytest.raises(InputError, match=r"split 'test'.*differs"):
        evaluate_run(run, splits=("test",))
