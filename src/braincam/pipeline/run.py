"""``braincam run``: one config → (synth) → prepare → train every model → evaluate → explain →
evaluate the heatmaps → report.

``OUT`` is the work directory of the experiment::

    OUT/config.yaml          the resolved config (every default written out)
    OUT/bids/                the synthetic cohort (only when the config has no ``bids``)
    OUT/slices/, splits.tsv  from ``prepare`` (``representation: volume``: OUT/volumes/)
    OUT/runs/<model>/        one training run per model (see ``braincam.pipeline.train``)
    OUT/comparison.tsv, .md  validation and test accuracy per model (the dMRI study's Table I)
    OUT/runs/<model>/heatmaps/, cam_eval/   heatmaps and their evaluation (``cams`` section)
    OUT/report.html          the self-contained report
    OUT/summary.json         sections prepare, training, evaluation, comparison, cam_evaluation

Every step is skipped when its outputs exist for the same parameters, so re-running resumes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from braincam.config import ExperimentConfig, dump_config, load_config, override
from braincam.errors import ConfigError, InputError
from braincam.io import read_json, write_json, write_text_atomic


def _synth_config(cfg: ExperimentConfig) -> Any:
    """The generator config of the ``synth`` section (``kind`` and ``workers`` left out)."""
    if cfg.synth is None:
        raise ConfigError("synth: the config has no 'synth' section")
    return cfg.synth.generator_config()


def _prepare_config(cfg: ExperimentConfig, progress: bool) -> Any:
    """The ``prepare`` step's config (``progress`` from the run unless the section sets it)."""
    return cfg.prepare.step_config(progress)


def _ensure_bids(cfg: ExperimentConfig, out: Path, progress: bool) -> Path:
    """The BIDS dataset to prepare: the config's, or a synthetic one made (once) under OUT."""
    if cfg.bids is not None:
        bids = Path(cfg.bids)
        if not bids.is_dir():
            raise InputError("BIDS directory not found", path=bids)
        return bids
    from braincam.synth import generator_for

    synth = _synth_config(cfg)
    workers = cfg.synth.workers  # type: ignore[union-attr]  # _synth_config checked it is set
    bids = out / "bids"
    stamp = out / ".synth-params.json"
    params = synth.model_dump()
    complete = (bids / "dataset_description.json").is_file() and stamp.is_file()
    if complete and read_json(stamp) == read_json_roundtrip(params):
        return bids
    generator_for(synth).synthesize(bids, synth, overwrite=True, progress=progress, workers=workers)
    write_json(stamp, params)
    return bids


def read_json_roundtrip(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples → lists), to compare with a stored stamp."""
    import json

    from braincam.io import dumps_json

    return json.loads(dumps_json(data))


def _ensure_prepared(cfg: ExperimentConfig, bids: Path, out: Path, progress: bool) -> None:
    """Run ``prepare`` unless OUT already holds a store (slices, or volumes) made with the same
    parameters."""
    from braincam.pipeline.prepare import prepare

    pconf = _prepare_config(cfg, progress)
    stamp = out / ".prepare-params.json"
    params = {"bids": str(bids.resolve()), **pconf.to_dict()}
    params.pop("progress", None)
    from braincam.layout import WorkLayout

    store = WorkLayout(out).store(pconf.representation)  # slices/ or volumes/
    ready = (store / "meta.json").is_file() and (out / "splits.tsv").is_file()
    if ready and stamp.is_file() and read_json(stamp) == read_json_roundtrip(params):
        return
    result = prepare(bids, out, pconf)
    if result.store_dir is None:
        failures = "; ".join(f"{f.participant_id}: {f.error}" for f in result.failures[:5])
        kind = "volume" if pconf.representation == "volume" else "slice"
        raise InputError(f"prepare produced no {kind} store ({failures})", path=out)
    write_json(stamp, params)


def resolve_config(
    config: ExperimentConfig | str | Path,
    *,
    bids: str | Path | None = None,
    out: str | Path | None = None,
) -> ExperimentConfig:
    """Load (if a path) and apply the command-line overrides."""
    cfg = config if isinstance(config, ExperimentConfig) else load_config(config)
    return override(
        cfg,
        {"bids": None if bids is None else str(bids), "out": None if out is None else str(out)},
    )


def check_models(cfg: ExperimentConfig) -> None:
    """``ConfigError`` naming ``models.<i>`` and the valid names unless every model is registered
    (built in, or added with :func:`braincam.models.register_model`)."""
    from braincam.training.zoo import check_model_name

    for i, name in enumerate(cfg.models):
        try:
            check_model_name(name)
        except ValueError as exc:
            raise ConfigError(f"models.{i}: {exc}") from None


def run_experiment(
    config: ExperimentConfig | str | Path,
    *,
    bids: str | Path | None = None,
    out: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run a whole experiment; returns ``{"out", "runs", "comparison"}`` (see the module doc)."""
    from braincam.pipeline.evaluate import compare_runs, evaluate_run
    from braincam.pipeline.train import fit

    cfg = resolve_config(config, bids=bids, out=out)
    check_models(cfg)  # fail on a typo before hours of preparation

    out_dir = Path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out_dir / "config.yaml", dump_config(cfg))
    bids_dir = _ensure_bids(cfg, out_dir, progress)
    _ensure_prepared(cfg, bids_dir, out_dir, progress)

    runs: list[Path] = []
    for name in cfg.models:
        run_dir = out_dir / "runs" / name
        summary = fit(out_dir, run_dir, model=name, config=cfg.train, progress=progress)
        if summary is None:  # a non-zero DDP rank: rank 0 evaluates
            continue
        evaluate_run(
            run_dir,
            splits=cfg.evaluate.splits,
            work_dir=out_dir,
            batch_size=cfg.evaluate.batch_size,
        )
        runs.append(run_dir)
    table = compare_runs(runs, out_dir) if runs else None
    if cfg.cams.enabled:
        _evaluate_heatmaps(cfg, runs, progress)
    report = None
    if runs:
        from braincam.report.build import build_report

        report = build_report(
            out_dir,
            runs=runs,
            title=cfg.report.title or f"braincam — {cfg.name}",
            max_viewers=cfg.report.max_viewers,
        )
    return {
        "out": out_dir,
        "runs": runs,
        "comparison": table,
        "report": report,
    }


def _evaluate_heatmaps(cfg: ExperimentConfig, runs: list[Path], progress: bool) -> None:
    """Explain every run with the configured CAM methods and evaluate the heatmaps."""
    from braincam.pipeline.evaluate_cams import evaluate_cams

    settings = cfg.cams.eval_config(seed=cfg.train.seed)
    for run_dir in runs:
        evaluate_cams(run_dir, settings, progress=progress)
