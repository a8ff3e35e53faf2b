"""`evaluate-cams` end to end on the tiny trained run: every family writes its tables."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from braincam.data.slices import SliceStore
from braincam.io import dumps_json
from braincam.pipeline.evaluate_cams import eval_dir


@pytest.fixture(scope="module")
def evaluated(tiny_run: tuple[Path, Path], cam_evaluation_summary: dict) -> tuple[Path, Path, dict]:
    work, run = tiny_run
    return work, run, cam_evaluation_summary


def _tsv(run: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(eval_dir(run, "test") / f"{name}.tsv", sep="\t")


def test_localization_rows_and_uniform_baseline(evaluated) -> None:
    work, run, _ = evaluated
    loc = _tsv(run, "localization")
    slice_rows = loc[loc["level"] == "slice"]
    assert set(slice_rows["method"]) == {"cam", "gradcam", "baseline:uniform", "baseline:random"}
    assert set(loc["level"]) == {"slice", "volume"}
    # a uniform map puts on the mask exactly the mask's share of the slice
    store = SliceStore.open(work / "slices")
    rows = store.rows(split="test").index.to_numpy()
    masks = np.asarray(store.masks[rows]) > 0
    masks = masks[masks.reshape(len(masks), -1).any(1)]
    expected = masks.reshape(len(masks), -1).mean(1).mean()
    uniform = slice_rows.set_index("method").loc["baseline:uniform"]
    assert uniform["relevance_mass"] == pytest.approx(expected, rel=1e-5)


def test_lesion_hit_rates_are_the_metric_on_the_stored_maps(evaluated) -> None:
    """The slice rows of lesion_hits.tsv recomputed from the explained maps and the store's
    masks; the summary holds the same values; the uniform map hits nothing."""
    import torch

    from braincam.metrics.lesions import hit_rate_by_size, lesion_hits

    work, run, summary = evaluated
    table = _tsv(run, "lesion_hits")
    assert set(table["level"]) == {"slice", "volume"}
    assert set(table["method"]) == {"cam", "gradcam", "baseline:uniform", "baseline:random"}
    store = SliceStore.open(work / "slices")
    slices = pd.read_csv(run / "heatmaps" / "test" / "slices.tsv", sep="\t")
    rows = slices["store_row"].to_numpy()
    masks = torch.from_numpy(np.asarray(store.masks[rows]) > 0)
    has = masks.flatten(1).any(1)
    assert has.any()
    p2w = store.pixel_to_world[rows]
    area = np.linalg.norm(p2w[:, :3, 0], axis=1) * np.linalg.norm(p2w[:, :3, 1], axis=1)
    maps = torch.from_numpy(np.load(run / "heatmaps" / "test" / "gradcam.npy"))
    spacing = torch.from_numpy(np.sqrt(area)[:, None].repeat(2, 1))[has]
    expected = hit_rate_by_size(lesion_hits(maps[has], masks[has], spacing))
    got = table[(table["level"] == "slice") & (table["method"] == "gradcam")]
    assert got["bin"].tolist() == [r["bin"] for r in expected]
    assert got["n_lesions"].tolist() == [r["n_lesions"] for r in expected]
    assert got["n_hit"].tolist() == [r["n_hit"] for r in expected]
    assert expected[0]["n_lesions"] >= int(has.sum())  # every masked slice has a lesion
    section = summary["lesion_hits"]["levels"]
    for _, row in table.iterrows():
        stored = section[row["level"]][row["method"]][row["bin"]]
        assert stored["n_lesions"] == row["n_lesions"] and stored["n_hit"] == row["n_hit"]
        if stored["hit_rate"] is None:
            assert row["n_lesions"] == 0 and np.isnan(row["hit_rate"])
        else:
            assert stored["hit_rate"] == pytest.approx(row["n_hit"] / row["n_lesions"])
    uniform = table[table["method"] == "baseline:uniform"]
    assert (uniform["n_hit"] == 0).all() and (uniform["n_lesions"] > 0).any()
    # the same lesions are counted for every method of a level
    for _, level in table.groupby("level"):
        assert level.groupby("bin")["n_lesions"].nunique().eq(1).all()


def test_localization_against_a_further_effect_mask(evaluated) -> None:
    """The back-projected maps scored against the ventricles mask found next to each subject's
    stored mask: one row per method and baseline; the uniform map's mass is the mask's share
    of each subject's grid, averaged over the subjects."""
    import nibabel as nib

    work, run, summary = evaluated
    table = _tsv(run, "localization_effects")
    assert set(table["ground_truth"]) == {"ventricles"} and set(table["level"]) == {"volume"}
    assert set(table["method"]) == {"cam", "gradcam", "baseline:uniform", "baseline:random"}
    store = SliceStore.open(work / "slices")
    subjects = sorted(store.rows(split="test")["participant_id"].unique())
    fractions = []
    for pid in subjects:
        path = str(store.meta["subjects"][pid]["mask"]).replace("lesion", "ventricles")
        fractions.append((np.asarray(nib.load(path).dataobj) > 0).mean())
    uniform = table.set_index("method").loc["baseline:uniform"]
    assert uniform["n_scored"] == len(subjects)  # every subject has the box, both classes
    assert uniform["relevance_mass"] == pytest.approx(np.mean(fractions), rel=1e-5)
    assert uniform["auroc"] == pytest.approx(0.5)
    stored = {r["method"]: r for r in summary["localization_effects"]}
    cam = table.set_index("method").loc["cam"]
    assert stored["cam"]["pointing_game"] == pytest.approx(cam["pointing_game"])
    assert stored["cam"]["ground_truth"] == "ventricles"


def test_perturbation_and_faithfulness_tables(evaluated) -> None:
    work, run, summary = evaluated
    pert = _tsv(run, "perturbation")
    assert set(pert["condition"]) == {"original", "translation", "cam_region", "random_regions"}
    # slices are explained for the predicted class, so the unperturbed accuracy is 1
    original = pert[pert["condition"] == "original"]
    assert (original["accuracy"] == 1.0).all()
    section = summary["perturbation"]
    for method in ("cam", "gradcam"):
        comp = section["methods"][method]["comparison"]
        # the baseline has 20 placements for every image of the CAM comparison
        assert comp["n_random"] == 20 * comp["n_images"] and comp["n_images"] > 0
        assert isinstance(comp["hurts_more"], bool)
        assert [d["strength"] for d in section["methods"][method]["dose_response"]] == [
            0.25,
            0.5,
            0.75,
            1.0,
        ]
        assert set(section["methods"][method]["per_class"]) <= {"a", "b"}
    # class b carries a ground-truth blob: both controls ran and are JSON booleans
    assert isinstance(section["positive_control"], bool)
    assert isinstance(section["negative_control"], bool)
    assert section["controls"]["positive"]["comparison"]["n_images"] > 0
    faith = _tsv(run, "faithfulness")
    assert {"cam", "gradcam", "baseline:random-order"} <= set(faith["method"])
    assert set(faith["curve"]) == {"deletion", "insertion"}
    # each AUC is the trapezoid (fraction 0..1) of its mean curve, over every test slice
    curves = np.load(eval_dir(run, "test") / "curves.npz")
    n_test = len(SliceStore.open(work / "slices").rows(split="test"))
    for _, row in faith.iterrows():
        key = (
            f"cam:random_{row['curve']}"
            if row["method"] == "baseline:random-order"
            else f"{row['method']}:{row['curve']}"
        )
        curve = curves[key]
        assert len(curve) == 5 + 1  # deletion_steps=5
        assert row["auc"] == pytest.approx(np.trapezoid(curve, dx=1 / 5), abs=1e-6), key
        assert row["n"] == n_test
    for method in ("cam", "gradcam"):
        deletion, insertion = curves[f"{method}:deletion"], curves[f"{method}:insertion"]
        # nothing deleted = everything inserted = the original slices; and the reverse
        assert deletion[0] == pytest.approx(insertion[-1], abs=1e-6)
        assert deletion[-1] == pytest.approx(insertion[0], abs=1e-6)
    # CAM ≡ Grad-CAM for a GAP + linear head: same maps, hence the same curves
    cam, grad = faith[faith["method"] == "cam"], faith[faith["method"] == "gradcam"]
    np.testing.assert_allclose(cam["auc"].to_numpy(), grad["auc"].to_numpy(), atol=1e-5)


def test_sanity_consistency_and_summary(evaluated) -> None:
    work, run, summary = evaluated
    assert set(summary["sanity"]) == {"cam", "gradcam"}
    for entry in summary["sanity"].values():
        assert isinstance(entry["flagged"], bool)
        assert len(entry["steps"]) >= 2 and entry["n_images"] == 4
    assert {"images"} < set(np.load(eval_dir(run, "test") / "sanity_maps.npz").files)
    for verdicts in summary["verdicts"].values():
        assert set(verdicts) == {
            "inside_brain",
            "localizes",
            "faithful",
            "randomization",
            "perturbation",
        }
        assert all(
            v["verdict"] is None or isinstance(v["verdict"], bool) for v in verdicts.values()
        )
    cons = _tsv(run, "consistency")
    assert {"slices_of_subject", "across_methods"} <= set(cons["level"])
    # CAM ≡ Grad-CAM for a GAP + linear head: the two methods' maps correlate perfectly ...
    across = cons[cons["level"] == "across_methods"]
    assert len(across) == len(SliceStore.open(work / "slices").rows(split="test"))
    np.testing.assert_allclose(across["mean_r"], 1.0, atol=1e-6)
    # ... so the within-subject consistency is the same for both; pairs are n(n-1)/2
    within = cons[cons["level"] == "slices_of_subject"]
    by = ["participant_id", "axis"]
    cam = within[within["method"] == "cam"].sort_values(by)
    grad = within[within["method"] == "gradcam"].sort_values(by)
    np.testing.assert_allclose(cam["mean_r"].to_numpy(), grad["mean_r"].to_numpy(), atol=1e-6)
    assert (within["n_pairs"] == within["n_maps"] * (within["n_maps"] - 1) // 2).all()
    # frequency maps: the fraction of a class's maps in which a pixel is in the top region
    freq = np.load(eval_dir(run, "test") / "frequency.npz")
    assert set(freq.files) == {"cam:a", "cam:b", "gradcam:a", "gradcam:b"}
    rows = SliceStore.open(work / "slices").rows(split="test")
    for name, f in freq.items():
        n = int((rows["label"] == name.split(":")[1]).sum())
        np.testing.assert_allclose(f * n, np.round(f * n), atol=1e-4, err_msg=name)
        assert f.max() > 0 and f.min() == 0
    work_summary = json.loads((work / "summary.json").read_text())
    assert work_summary["cam_evaluation"][run.name]["split"] == "test"
    assert set(summary["seconds"]) == {
        "localization",
        "lesion_hits",
        "localization_effects",
        "perturbation",
        "faithfulness",
        "sanity",
        "shortcut",
        "consistency",
    }


def test_shortcut_alarm_section(evaluated) -> None:
    work, run, summary = evaluated
    section = summary["shortcut"]
    assert set(section["methods"]) == {"cam", "gradcam", "baseline:uniform"}
    # a uniform map puts exactly its area's share outside the brain: never an alarm
    uniform = section["methods"]["baseline:uniform"]
    assert uniform["outside_brain"]["mass"] == pytest.approx(uniform["outside_brain"]["area"])
    assert uniform["alarm"] is False
    # the area outside the brain is the share of background pixels of the test slices
    store = SliceStore.open(work / "slices")
    rows = store.rows(split="test").index.to_numpy()
    background = ~(np.asarray(store.images[rows]) > 0).any(1)
    assert uniform["outside_brain"]["area"] == pytest.approx(background.mean(), rel=1e-6)
    for method in ("cam", "gradcam"):
        entry = section["methods"][method]
        assert type(entry["alarm"]) is bool
        verdict = summary["verdicts"][method]["inside_brain"]
        assert verdict["verdict"] is (not entry["alarm"])
    assert section["alarm"] is any(m["alarm"] for m in section["methods"].values())
    table = _tsv(run, "shortcut")
    assert set(table["where"]) == {"outside_brain", "rim"}


def _verdict_fields(node: object, where: str = "") -> list[tuple[str, object]]:
    """Every (place, value) whose key names a verdict, anywhere in a summary."""
    names = {"flagged", "hurts_more", "hurts_more_than_random", "verdict"}
    names |= {"positive_control", "negative_control", "alarm", "fires"}
    found: list[tuple[str, object]] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in names:
                found.append((f"{where}.{key}", value))
            found += _verdict_fields(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _verdict_fields(value, f"{where}[{i}]")
    return found


def test_verdicts_read_back_from_disk_are_json_booleans(evaluated) -> None:
    """The files on disk, not the returned dict: a verdict is ``true``/``false`` (or null where
    the verdict table has no verdict), never the truthy string "False"."""
    work, run, summary = evaluated
    on_disk = {
        "run": json.loads((eval_dir(run, "test") / "summary.json").read_text()),
        "work": json.loads((work / "summary.json").read_text())["cam_evaluation"][run.name],
    }
    for name, data in on_disk.items():
        fields = _verdict_fields(data)
        kinds = {place.rsplit(".", 1)[1] for place, _ in fields}
        assert kinds == {
            "flagged",
            "hurts_more",
            "hurts_more_than_random",
            "verdict",
            "positive_control",
            "negative_control",
            "alarm",
            "fires",
        }, name
        for place, value in fields:
            if place.endswith(".verdict"):
                assert value is None or type(value) is bool, (name, place, value)
            else:
                assert type(value) is bool, (name, place, value)
        for method in ("cam", "gradcam"):
            flagged = data["sanity"][method]["flagged"]
            assert type(flagged) is bool
            # the verdict table's randomization verdict is the negation of the sanity flag
            assert data["verdicts"][method]["randomization"]["verdict"] is (not flagged)
    assert on_disk["run"] == on_disk["work"] == json.loads(dumps_json(summary))


def test_report_from_a_run_renders_every_section(evaluated) -> None:
    from braincam.report.build import build_report

    work, run, _ = evaluated
    path = build_report(work, runs=[run], title="tiny <run>")
    html = path.read_text()
    for anchor in ("verdicts", "dataset", "models", "heatmaps", "evaluation", "regions"):
        assert f'id="{anchor}"' in html
    assert "tiny &lt;run&gt;" in html
    assert "baseline:uniform" in html  # localization read against its baseline
    assert "deletion" in html and "Subject split" in html
    assert html.count("data:image/png;base64,") >= 4
    assert "dose–response" in html and "<details>" in html
    assert html.index('id="verdicts"') < html.index('id="dataset"')  # verdicts first
    # the verdict section shows every method's four verdicts, each the stored one
    from braincam.report.audit import keyed_values

    start = html.index('id="verdicts"')
    section = html[start : html.index('id="', start + len('id="verdicts"'))]
    shown = dict(keyed_values(section))
    stored = json.loads((work / "summary.json").read_text())["cam_evaluation"][run.name]
    for method, verdicts in stored["verdicts"].items():
        for name, verdict in verdicts.items():
            key = f"cam_evaluation/{run.name}/verdicts/{method}/{name}/verdict"
            word = {True: "yes", False: "no", None: "n/a"}[verdict["verdict"]]
            assert shown.get(key) in ({word, "–"} if verdict["verdict"] is None else {word}), key


def test_report_agrees_with_summary_and_audit_catches_a_flip(evaluated) -> None:
    """Every verdict and headline figure in report.html is the one summary.json holds."""
    from braincam.report.audit import audit_report, keyed_values
    from braincam.report.build import build_report

    work, run, _ = evaluated
    html = build_report(work, runs=[run]).read_text()
    summary = json.loads((work / "summary.json").read_text())
    assert audit_report(html, summary) == []
    shown = dict(keyed_values(html))
    assert len(shown) >= 30  # verdicts, figures, baselines, sanity flags, controls
    for method in ("cam", "gradcam"):
        flagged = summary["cam_evaluation"][run.name]["sanity"][method]["flagged"]
        key = f"cam_evaluation/{run.name}/sanity/{method}/flagged"
        assert shown[key] == ("FLAGGED" if flagged else "passes")
    # Flip one verdict in the data: the unchanged report now contradicts it, and the audit says so.
    ev = summary["cam_evaluation"][run.name]
    ev["sanity"]["cam"]["flagged"] = not ev["sanity"]["cam"]["flagged"]
    problems = audit_report(html, summary)
    assert len(problems) == 1 and "sanity/cam/flagged" in problems[0]
    ev["sanity"]["cam"]["flagged"] = not ev["sanity"]["cam"]["flagged"]
    ev["perturbation"]["positive_control"] = not ev["perturbation"]["positive_control"]
    assert any("positive_control" in p for p in audit_report(html, summary))
    ev["perturbation"]["positive_control"] = not ev["perturbation"]["positive_control"]
    verdict = ev["verdicts"]["gradcam"]["faithful"]
    verdict["figure"] = verdict["figure"] + 0.01
    assert any("gradcam/faithful/figure" in p for p in audit_report(html, summary))
    verdict["figure"] = verdict["figure"] - 0.01
    # the lesion hit rates: every one is shown, and a changed count or rate is caught
    hits = ev["lesion_hits"]["levels"]["slice"]["cam"]["all"]
    lesion_keys = [k for k in shown if "/lesion_hits/" in k]
    assert len(lesion_keys) == 3 * 5 * 4 * 2  # rate, hits, lesions × 5 bins × 4 maps × 2 levels
    assert shown[f"cam_evaluation/{run.name}/lesion_hits/levels/slice/cam/all/n_lesions"] == str(
        hits["n_lesions"]
    )
    hits["n_hit"] += 1
    assert any("lesion_hits/levels/slice/cam/all/n_hit" in p for p in audit_report(html, summary))
    hits["n_hit"] -= 1
    ev["lesion_hits"]["levels"]["slice"]["cam"]["all"]["hit_rate"] = 0.987654
    assert any("slice/cam/all/hit_rate" in p for p in audit_report(html, summary))


def test_run_report_renders_in_chromium(evaluated, tmp_path) -> None:
    """The report of a real (tiny) run, not a hand-made page: images decode, no JS errors."""
    from braincam.report.browser import check_report
    from braincam.report.build import build_report
    from builders.browser import _require_browser

    _require_browser()
    work, run, _ = evaluated
    path = build_report(work, runs=[run])
    result = check_report(path, tmp_path / "run-report.png")
    assert result.errors == [] and result.broken_images == []
    assert result.n_images >= 4


def _evaluate_copy(work: Path, original: Path, dest: Path, **settings) -> tuple[Path, dict, dict]:
    """evaluate-cams on a copy of the tiny run (another name); the shared WORK's summary.json
    is put back afterwards, and the work summary written by this evaluation returned."""
    import shutil

    from braincam.pipeline.evaluate_cams import CamEvalConfig, evaluate_cams

    shutil.copytree(original, dest)
    work_summary = work / "summary.json"
    before = work_summary.read_bytes()
    try:
        summary = evaluate_cams(dest, CamEvalConfig(**settings), progress=False)
        written = json.loads(work_summary.read_text())
    finally:
        work_summary.write_bytes(before)
    return dest, summary, written


def test_skipped_families_are_recorded_and_the_report_says_not_run(evaluated, tmp_path) -> None:
    """``checks`` without perturbation and sanity: their sections are null, listed as skipped,
    their stale files from an earlier evaluation removed; the report says "not run" where their
    verdicts would be and shows no verdict, flag or control for them."""
    from braincam.report.audit import audit_report, keyed_values
    from braincam.report.build import build_report
    from braincam.summary_schema import validate_cam_evaluation

    work, original, _ = evaluated
    root = eval_dir(original, "test")
    assert (root / "sanity.tsv").is_file() and (root / "perturbation.tsv").is_file()
    run, summary, written = _evaluate_copy(
        work, original, tmp_path / "skipping",
        methods=("cam", "gradcam"), checks=("localization", "faithfulness", "shortcut"),
        max_images=4, deletion_steps=2,
    )  # fmt: skip
    assert summary["skipped"] == [
        "lesion_hits", "localization_effects", "perturbation", "sanity", "consistency", "regions"
    ]  # fmt: skip
    assert set(summary["seconds"]) == {"localization", "faithfulness", "shortcut"}
    for name in summary["skipped"]:
        assert summary[name] is None, name
    assert validate_cam_evaluation(summary).skipped == summary["skipped"]
    out = eval_dir(run, "test")
    for stale in ("sanity.tsv", "sanity_maps.npz", "perturbation.tsv", "consistency.tsv"):
        assert not (out / stale).exists(), stale  # copied from the full evaluation, removed
    assert (out / "localization.tsv").is_file() and (out / "curves.npz").is_file()
    for verdict in summary["verdicts"].values():
        assert verdict["randomization"]["verdict"] is None
        assert verdict["perturbation"]["verdict"] is None
        assert isinstance(verdict["localizes"]["verdict"], bool)

    assert written["cam_evaluation"][run.name]["skipped"] == summary["skipped"]
    # the report reads this run's evaluation from its own summary.json (WORK's was put back)
    html = build_report(work, runs=[run]).read_text()
    start = html.index('id="verdicts"')
    verdict_html = html[start : html.index('id="', start + len('id="verdicts"'))]
    shown = dict(keyed_values(html))
    base = f"cam_evaluation/{run.name}"
    for method in ("cam", "gradcam"):
        for family in ("randomization", "perturbation"):
            assert not [k for k in shown if k.startswith(f"{base}/verdicts/{method}/{family}/")]
        assert f"{base}/verdicts/{method}/localizes/verdict" in shown
        assert f"{base}/sanity/{method}/flagged" not in shown
    assert f"{base}/perturbation/positive_control" not in shown
    # one "not run" cell per method for each of the two skipped verdict families
    assert verdict_html.count(">not run<") == 2 * 2
    assert "not run (left out of cams.checks): lesion_hits" in html
    assert "cascading randomization" not in html and "dose–response" not in html
    assert audit_report(html, {"cam_evaluation": {run.name: summary}}) == []


def test_sanity_cascade_setting_reaches_the_check(evaluated, tmp_path) -> None:
    """``sanity_cascade: full`` re-explains once per method (the step named "all"), "blocks"
    once per block of the model; the default evaluation walked every parameter layer."""
    import torch

    from braincam.metrics.sanity import cascade_steps, parameter_layers
    from braincam.training.loading import load_trained

    work, original, full_eval = evaluated
    model, _ = load_trained(original)
    layers = parameter_layers(model.eval(), torch.zeros(1, 1, 32, 32))
    assert [len(e["steps"]) for e in full_eval["sanity"].values()] == [len(layers)] * 2
    for cascade, names in (
        ("full", ["all"]),
        ("blocks", [name for name, _ in cascade_steps(model, layers, "blocks")]),
    ):
        _, summary, _ = _evaluate_copy(
            work, original, tmp_path / cascade, methods=("cam", "gradcam"),
            checks=("localization", "sanity"), sanity_images=2, sanity_cascade=cascade,
        )  # fmt: skip
        for method, entry in summary["sanity"].items():
            assert entry["cascade"] == cascade
            assert [s["layer"] for s in entry["steps"]] == names, method
            assert summary["verdicts"][method]["randomization"]["verdict"] is (not entry["flagged"])
        table = pd.read_csv(eval_dir(tmp_path / cascade, "test") / "sanity.tsv", sep="\t")
        assert table.groupby("method")["step"].max().tolist() == [len(names)] * 2
    assert len(names) < len(layers)  # blocks are coarser than layers for this model


def test_intgrad_compares_each_image_with_the_other_class_and_is_checked(
    evaluated, tmp_path
) -> None:
    """``intgrad`` through explain and evaluate-cams: each saved map is Integrated Gradients from
    the other class's mean training slice at the same position (not from zeros), and the
    randomization check re-explains with those references and gives a boolean verdict."""
    import numpy as np
    import torch

    from braincam.cam import compute_cams
    from braincam.data.normalization import zscore
    from braincam.data.references import ClassReferences
    from braincam.data.volumes import open_any_store
    from braincam.pipeline.explain import ExplainConfig, explain_run
    from braincam.training.loading import load_trained

    work, original, _ = evaluated
    dest, summary, _ = _evaluate_copy(
        work, original, tmp_path / "ig", methods=("intgrad",), checks=("localization", "sanity"),
        sanity_images=4, sanity_cascade="full",
    )  # fmt: skip
    res = explain_run(dest, ExplainConfig(methods=("intgrad",), overlays=0), progress=False)
    assert res.skipped == ["intgrad"]  # evaluate-cams wrote these maps
    model, record = load_trained(dest)
    store = open_any_store(record["store"])
    table = res.slices()
    rows, explained = table["store_row"].to_numpy(), table["explained"].to_numpy()
    x = zscore(torch.from_numpy(np.array(store.images[rows])), record)
    ref = zscore(torch.from_numpy(ClassReferences(store).for_rows(rows, explained)), record)
    targets = explained.tolist()
    expected = compute_cams(model, x, "intgrad", targets=targets, reference=ref)
    np.testing.assert_allclose(res.maps("intgrad"), expected.numpy(), atol=1e-5)
    from_zeros = compute_cams(model, x, "intgrad", targets=targets)
    assert not np.allclose(res.maps("intgrad"), from_zeros.numpy(), atol=1e-3)
    entry = summary["sanity"]["intgrad"]
    assert [s["layer"] for s in entry["steps"]] == ["all"] and entry["n_images"] == 4
    assert summary["verdicts"]["intgrad"]["randomization"]["verdict"] is (not entry["flagged"])
    assert any(r["method"] == "intgrad" for r in summary["localization"])


def test_volume_auroc_ranks_the_voxels_the_slices_cover(evaluated) -> None:
    """The volume rows' AUROC recomputed with scikit-learn from the NIfTI maps explain wrote,
    over the voxels the subject's explained slices pass through; those are not every voxel
    (otherwise the test would not tell the two rules apart)."""
    import nibabel as nib
    from nibabel.processing import resample_from_to
    from sklearn.metrics import roc_auc_score

    from braincam.layout import RunLayout

    work, run, _ = evaluated
    loc = _tsv(run, "localization")
    got = loc[(loc["level"] == "volume") & (loc["method"] == "gradcam")]["auroc"].item()
    store = SliceStore.open(work / "slices")
    slices = pd.read_csv(run / "heatmaps" / "test" / "slices.tsv", sep="\t")
    layout = RunLayout(run).heatmaps("test")
    aurocs, fractions = [], []
    for pid, group in slices.groupby("participant_id"):
        heat = nib.load(layout.nifti_map(str(pid), "gradcam"))
        mask = nib.load(store.meta["subjects"][pid]["mask"])
        mask = np.asarray(resample_from_to(mask, heat, order=0).dataobj) > 0
        ones = np.ones((len(group), *store.images.shape[-2:]), np.float32)
        covered = np.isfinite(
            np.asarray(store.backproject(ones, pid, rows=group["store_row"]).dataobj)
        )
        if not mask.any():
            continue
        fractions.append(covered.mean())
        aurocs.append(roc_auc_score(mask[covered], np.asarray(heat.dataobj)[covered]))
    assert aurocs and max(fractions) < 1.0
    assert got == pytest.approx(np.mean(aurocs), abs=1e-5)
