"""The layout module names every path of the work and run directories (the on-disk contract)."""

from __future__ import annotations

from pathlib import Path

from braincam.layout import CamEvalLayout, HeatmapLayout, RunLayout, WorkLayout


def test_work_directory_paths() -> None:
    work = WorkLayout("/w")
    expected = {
        "slices": "/w/slices",
        "volumes": "/w/volumes",
        "splits": "/w/splits.tsv",
        "failures": "/w/failures.tsv",
        "summary": "/w/summary.json",
        "config": "/w/config.yaml",
        "comparison_tsv": "/w/comparison.tsv",
        "comparison_md": "/w/comparison.md",
        "report": "/w/report.html",
        "runs": "/w/runs",
    }
    assert {k: str(getattr(work, k)) for k in expected} == expected
    assert work.run("resnet18-gap") == RunLayout(Path("/w/runs/resnet18-gap"))
    assert (work.store("slices"), work.store("volume")) == (work.slices, work.volumes)


def test_run_directory_paths() -> None:
    run = RunLayout("/r")
    expected = {
        "checkpoints": "/r/checkpoints",
        "best_checkpoint": "/r/checkpoints/best.ckpt",
        "last_checkpoint": "/r/checkpoints/last.ckpt",
        "model": "/r/model.pt",
        "record": "/r/record.json",
        "inputs": "/r/inputs.json",
        "metrics": "/r/metrics.tsv",
        "curves": "/r/curves.png",
    }
    assert {k: str(getattr(run, k)) for k in expected} == expected
    # Lightning appends ".ckpt" to the checkpoint name and puts loggers under RUN/<name>/
    assert run.checkpoints / f"{RunLayout.BEST_CHECKPOINT_NAME}.ckpt" == run.best_checkpoint
    assert (RunLayout.LOGS_NAME, RunLayout.TENSORBOARD_NAME) == ("logs", "tensorboard")
    assert str(run.eval_json("test")) == "/r/eval_test.json"
    assert str(run.predictions("val")) == "/r/predictions_val.tsv"
    assert str(run.eval_table("test", "confusion")) == "/r/eval_test_confusion.tsv"
    assert run.heatmaps("test") == HeatmapLayout("/r/heatmaps/test")
    assert run.cam_eval("val") == CamEvalLayout("/r/cam_eval/val")


def test_heatmap_and_cam_eval_paths() -> None:
    maps = HeatmapLayout("/h")
    assert str(maps.slices) == "/h/slices.tsv" and str(maps.meta) == "/h/meta.json"
    assert str(maps.maps("gradcam")) == "/h/gradcam.npy"
    assert str(maps.overlay("cam")) == "/h/overlays/cam.png"
    assert str(maps.nifti_map("sub-01", "cam")) == "/h/nifti/sub-01_desc-cam_heatmap.nii.gz"
    ev = CamEvalLayout("/e")
    assert str(ev.summary) == "/e/summary.json"
    assert str(ev.table("lobe_ranking")) == "/e/lobe_ranking.tsv"
    assert (str(ev.curves), str(ev.frequency)) == ("/e/curves.npz", "/e/frequency.npz")
    path = ev.mni_mean("gradcam", "old")
    assert str(path) == "/e/mni_mean_gradcam_old.nii.gz"
    assert ev.mni_mean_label(path, "gradcam") == "old"


def test_a_trained_and_explained_run_matches_the_layout(tiny_run: tuple[Path, Path]) -> None:
    from braincam.pipeline.explain import ExplainConfig, explain_run

    work_dir, run_dir = tiny_run
    work, run = WorkLayout(work_dir), RunLayout(run_dir)
    assert work.slices.is_dir() and work.splits.is_file() and work.summary.is_file()
    for path in (run.model, run.record, run.inputs, run.metrics, run.curves):
        assert path.is_file(), path
    assert run.best_checkpoint.is_file() and run.last_checkpoint.is_file()
    assert (run.root / RunLayout.LOGS_NAME).is_dir()
    res = explain_run(run_dir, ExplainConfig(methods=("cam",), overlays=2), progress=False)
    maps = run.heatmaps("test")
    assert res.out_dir == maps.root
    assert maps.meta.is_file() and maps.slices.is_file() and maps.maps("cam").is_file()
    assert maps.overlay("cam").is_file()
    pid = res.slices()["participant_id"].iloc[0]
    assert maps.nifti_map(pid, "cam").is_file()
