"""`braincam train`, `braincam evaluate`, `braincam run`: thin wrappers over the Python API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from braincam.cli._app import app


def _devices(value: str | None) -> int | str | None:
    if value is None:
        return None
    return int(value) if value.isdigit() else value


def _print_eval(results: dict[str, dict[str, Any]], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("split", "loss", "slice acc", "AUC", "subject acc", "subjects"):
        table.add_column(col)
    for split, m in results.items():
        sub = m.get("subject", {})
        auc = "–" if m["auc"] is None else f"{m['auc']:.3f}"
        table.add_row(
            split,
            f"{m['loss']:.4f}",
            f"{m['accuracy']:.3f}",
            auc,
            f"{sub.get('accuracy', float('nan')):.3f}",
            f"{sub.get('correct')}/{sub.get('n')}",
        )
    Console().print(table)


@app.command()
def train(
    work_dir: Annotated[Path, typer.Argument(help="work directory holding slices/ (prepare)")],
    run_dir: Annotated[Path, typer.Argument(help="output directory of this training run")],
    model: Annotated[str, typer.Option("--model", "-m", help="zoo model name")],
    config: Annotated[
        Path | None, typer.Option(help="experiment YAML whose 'train' section to start from")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="maximum epochs")] = None,
    batch_size: Annotated[int | None, typer.Option(help="batch size")] = None,
    optimizer: Annotated[str | None, typer.Option(help="sgd | adam | adamw")] = None,
    lr: Annotated[float | None, typer.Option(help="learning rate")] = None,
    momentum: Annotated[float | None, typer.Option(help="SGD momentum")] = None,
    weight_decay: Annotated[float | None, typer.Option(help="weight decay")] = None,
    schedule: Annotated[str | None, typer.Option(help="none | cosine | step")] = None,
    patience: Annotated[int | None, typer.Option(help="early-stopping patience (epochs)")] = None,
    dropout: Annotated[float | None, typer.Option(help="dropout before the classifier")] = None,
    weights: Annotated[str | None, typer.Option(help="local ImageNet weights file")] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    workers: Annotated[int | None, typer.Option(help="DataLoader worker processes")] = None,
    accelerator: Annotated[str | None, typer.Option(help="cpu | gpu | auto")] = None,
    devices: Annotated[str | None, typer.Option(help="devices per node (int or 'auto')")] = None,
    num_nodes: Annotated[int | None, typer.Option(help="number of nodes")] = None,
    strategy: Annotated[str | None, typer.Option(help="auto | ddp | ddp_spawn | ...")] = None,
    resume: Annotated[
        bool | None,
        typer.Option(
            "--resume/--no-resume",
            help="continue from RUN/checkpoints/last.ckpt (default: when it exists) or restart",
        ),
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Train MODEL on WORK_DIR's slice store; checkpoints, metrics.tsv, curves.png in RUN_DIR."""
    from braincam.config import TrainConfig, load_config, override
    from braincam.pipeline.train import fit

    base = load_config(config).train if config is not None else TrainConfig()
    cfg = override(
        base,
        {
            "epochs": epochs,
            "batch_size": batch_size,
            "optimizer.name": optimizer,
            "optimizer.lr": lr,
            "optimizer.momentum": momentum,
            "optimizer.weight_decay": weight_decay,
            "schedule.name": schedule,
            "early_stopping.patience": patience,
            "dropout": dropout,
            "weights": weights,
            "seed": seed,
            "num_workers": workers,
            "accelerator": accelerator,
            "devices": _devices(devices),
            "num_nodes": num_nodes,
            "strategy": strategy,
        },
    )
    summary = fit(work_dir, run_dir, model=model, config=cfg, resume=resume, progress=progress)
    if summary is not None:
        loss, acc = summary["best_val_loss"], summary["best_val_acc"]
        scores = "" if loss is None or acc is None else f" (val loss {loss:.4f}, val acc {acc:.3f})"
        print(
            f"trained {model}: best epoch {summary['best_epoch']}{scores} → {run_dir / 'model.pt'}"
        )


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a training run directory")],
    split: Annotated[
        list[str] | None, typer.Option("--split", help="split to evaluate (repeatable)")
    ] = None,
    work_dir: Annotated[
        Path | None, typer.Option("--work", help="work directory (default: the run's)")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="inference batch size")] = 64,
) -> None:
    """Evaluate a trained run: slice and subject metrics into RUN_DIR/eval_<split>.json + TSVs."""
    from braincam.pipeline.evaluate import evaluate_run

    splits = split or ["val", "test"]
    results = evaluate_run(run_dir, splits=splits, work_dir=work_dir, batch_size=batch_size)
    _print_eval(results, f"Evaluation of {run_dir}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="experiment YAML (see configs/)")],
    bids: Annotated[Path | None, typer.Option(help="BIDS dataset (overrides the config)")] = None,
    out: Annotated[
        Path | None, typer.Option(help="output directory (overrides the config)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
) -> None:
    """Run an experiment: (synth) → prepare → train every model → evaluate → comparison table."""
    from braincam.pipeline.run import run_experiment

    result = run_experiment(config, bids=bids, out=out, progress=progress)
    if result["runs"]:
        md = (Path(result["out"]) / "comparison.md").read_text()
        print(md)
        print(f"results in {result['out']}")
    if result.get("report") is not None:
        print(f"report: {Path(result['report']).resolve()}")
