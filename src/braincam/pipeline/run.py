"""``braincam run``: one config → (synth) → prepare → train every model → evaluate → explain →
evaluate the heatmaps → report.

``OUT`` is the work directory of the experiment::

    OUT/config.yaml          the resolved config (every default written out)
    OUT/bids/                the synthetic cohort (only when the config has no ``bids``)
    OUT/slices/, splits.tsv  from ``prepare``
    OUT/runs/<model>/        one training run per model (see ``braincam.pipeline.train``)
    OUT/comparison.tsv, .md  validation and test accuracy per model (the dMRI study's Table I)
    OUT/runs/<model>/heatmaps/, cam_eval/   heatmaps and their evaluation (``cams`` section)
    OUT/report.html          the self-contained report
    OUT/summary.json         sections prepare, training, evaluation, comparison, cam_evaluation

Every step is skipped when its outputs exist for the same parameters, so re-running resumes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from braincam.config import ExperimentConfig, dump_config, load_config, override
from braincam.errors import ConfigError, InputError
from braincam.io import read_json, write_json, write_text_atomic


def _dataclass_config(cls: type, params: dict[str, Any], section: str) -> Any:
    """Build the dataclass ``cls`` from a config section, naming unknown keys by path."""
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(params) - fields)
    if unknown:
        raise ConfigError(
            f"{section}.{unknown[0]}: unknown key (valid keys: {', '.join(sorted(fields))})"
        )
    try:
        return cls(**params)
    except ConfigError as exc:
        raise ConfigError(f"{section}: {exc}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{section}: {exc}") from None


def _synth_config(cfg: ExperimentConfig) -> Any:
    """The synthesis dataclass of the config's ``synth`` section (``kind``: dwi | structural)."""
    from braincam.synth.anat import AnatSynthConfig
    from braincam.synth.dwi import SynthConfig

    params = dict(cfg.synth or {})
    params.pop("workers", None)  # how to run, not what to make: not part of the data's identity
    kind = params.pop("kind", "dwi")
    if kind not in ("dwi", "structural"):
        raise ConfigError(f"synth.kind: must be 'dwi' or 'structural', got {kind!r}")
    cls = SynthConfig if kind == "dwi" else AnatSynthConfig
    for key in ("young_ages", "old_ages", "groups"):
        if key in params:
            params[key] = tuple(params[key])
    synth = _dataclass_config(cls, params, "synth")
    try:
        synth.validate()
    except ConfigError as exc:
        raise ConfigError(f"synth.{exc}") from None
    return synth


def _prepare_config(cfg: ExperimentConfig, progress: bool) -> Any:
    from braincam.pipeline.prepare import PrepareConfig

    params = dict(cfg.prepare)
    for key in ("split_ratios", "axes", "participant_labels"):
        if params.get(key) is not None:
            params[key] = tuple(params[key])
    params.setdefault("progress", progress)
    try:
        return _dataclass_config(PrepareConfig, params, "prepare")
    except ConfigError as exc:
        msg = str(exc)
        raise ConfigError(msg if msg.startswith("prepare") else f"prepare: {msg}") from None


def _ensure_bids(cfg: ExperimentConfig, out: Path, progress: bool) -> Path:
    """The BIDS dataset to prepare: the config's, or a synthetic one made (once) under OUT."""
    if cfg.bids is not None:
        bids = Path(cfg.bids)
        if not bids.is_dir():
            raise InputError("BIDS directory not found", path=bids)
        return bids
    from braincam.synth.anat import AnatSynthConfig, synthesize_anat
    from braincam.synth.dwi import synthesize

    synth = _synth_config(cfg)
    workers = int((cfg.synth or {}).get("workers", 1))
    bids = out / "bids"
    stamp = out / ".synth-params.json"
    params = dataclasses.asdict(synth)
    complete = (bids / "dataset_description.json").is_file() and stamp.is_file()
    if complete and read_json(stamp) == read_json_roundtrip(params):
        return bids
    make = synthesize_anat if isinstance(synth, AnatSynthConfig) else synthesize
    make(bids, synth, overwrite=True, progress=progress, workers=workers)
    write_json(stamp, params)
    return bids


def read_json_roundtrip(data: Any) -> Any:
    """``data`` as it reads back from JSON (tuples → lists), to compare with a stored stamp."""
    import json

    return json.loads(json.dumps(data, default=str))


def _ensure_prepared(cfg: ExperimentConfig, bids: Path, out: Path, progress: bool) -> None:
    """Run ``prepare`` unless OUT already holds a slice store made with the same parameters."""
    from braincam.pipeline.prepare import prepare

    pconf = _prepare_config(cfg, progress)
    stamp = out / ".prepare-params.json"
    params = {"bids": str(bids.resolve()), **pconf.to_dict()}
    params.pop("progress", None)
    ready = (out / "slices" / "meta.json").is_file() and (out / "splits.tsv").is_file()
    if ready and stamp.is_file() and read_json(stamp) == read_json_roundtrip(params):
        return
    result = prepare(bids, out, pconf)
    if result.store_dir is None:
        failures = "; ".join(f"{f.participant_id}: {f.error}" for f in result.failures[:5])
        raise InputError(f"prepare produced no slice store ({failures})", path=out)
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
    from braincam.training.zoo import check_model_name

    cfg = resolve_config(config, bids=bids, out=out)
    for i, name in enumerate(cfg.models):  # fail on a typo before hours of preparation
        try:
            check_model_name(name)
        except ValueError as exc:
            raise ConfigError(f"models.{i}: {exc}") from None
    if cfg.synth is not None:  # validated even when a BIDS directory makes it unused
        _synth_config(cfg)
    _prepare_config(cfg, progress)

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

        report = build_report(out_dir, runs=runs, title=f"braincam — {cfg.name}")
    return {
        "out": out_dir,
        "runs": runs,
        "comparison": table,
        "report": report,
    }


def _evaluate_heatmaps(cfg: ExperimentConfig, runs: list[Path], progress: bool) -> None:
    """Explain every run with the configured CAM methods and evaluate the heatmaps."""
    from braincam.pipeline.evaluate_cams import CamEvalConfig, evaluate_cams

    cams = cfg.cams
    settings = CamEvalConfig(
        split=cams.split,
        methods=tuple(cams.methods),
        threshold=cams.threshold,
        noise_std=cams.noise_std,
        max_images=cams.max_images,
        sanity_images=cams.sanity_images,
        regions=cams.regions,
        atlas=cams.atlas,
        seed=cfg.train.seed,
    )
    for run_dir in runs:
        evaluate_cams(run_dir, settings, progress=progress)
