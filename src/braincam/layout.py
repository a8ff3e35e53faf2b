"""Every path of a work directory and of a run directory, built in one place.

A *work directory* (``WORK``, the ``--out`` of ``braincam run`` / ``demo``, the output of
``braincam prepare``) holds the prepared data, the runs and the experiment-level results::

    WORK/
      slices/                 the 2.5D slice store (images.npy, index.tsv, meta.json, ...)
      volumes/                the whole-brain volume store (representation: volume), instead
      splits.tsv              subject → split
      failures.tsv            subjects that could not be prepared, with the reason
      summary.json            one section per step (prepare, training, evaluation, ...)
      config.yaml             the experiment's resolved configuration (braincam run)
      comparison.tsv/.md      the models side by side (the dMRI study's Table I)
      report.html             the self-contained report
      runs/<model>/           one run directory per trained model

A *run directory* (``RUN``) holds one trained model and everything computed from it::

    RUN/
      checkpoints/best.ckpt, checkpoints/last.ckpt   Lightning checkpoints
      model.pt, record.json, inputs.json             best weights + record; training inputs
      metrics.tsv, curves.png, logs/, tensorboard/   per-epoch table, curves, logger output
      eval_<split>.json, predictions_<split>.tsv,    classification evaluation of a split
      eval_<split>_{subjects,per_class,confusion}.tsv
      heatmaps/<split>/                              explain: slices.tsv, <method>.npy, meta.json,
                                                     overlays/<method>.png,
                                                     nifti/<pid>_desc-<method>_heatmap.nii.gz
      cam_eval/<split>/                              evaluate-cams: <table>.tsv, summary.json,
                                                     curves.npz, frequency.npz,
                                                     mni_mean_<method>_<class>.nii.gz

Nothing here touches the disk: these are names only. Steps create what they write.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["CamEvalLayout", "HeatmapLayout", "RunLayout", "WorkLayout"]


@dataclass(frozen=True)
class WorkLayout:
    """The paths of a work directory."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def slices(self) -> Path:
        return self.root / "slices"

    @property
    def volumes(self) -> Path:
        """The volume store (``prepare`` with ``representation: volume``)."""
        return self.root / "volumes"

    def store(self, representation: str) -> Path:
        """The store of a representation: ``slices`` or ``volume``."""
        return self.volumes if representation == "volume" else self.slices

    @property
    def splits(self) -> Path:
        return self.root / "splits.tsv"

    @property
    def failures(self) -> Path:
        return self.root / "failures.tsv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def comparison_tsv(self) -> Path:
        return self.root / "comparison.tsv"

    @property
    def comparison_md(self) -> Path:
        return self.root / "comparison.md"

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    def run(self, name: str) -> RunLayout:
        """The run directory of model ``name`` (``WORK/runs/<name>``)."""
        return RunLayout(self.runs / name)


@dataclass(frozen=True)
class RunLayout:
    """The paths of a run directory."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    # ------------------------------------------------------------------ training
    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def best_checkpoint(self) -> Path:
        return self.checkpoints / "best.ckpt"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.ckpt"

    #: Lightning's ModelCheckpoint ``filename`` of the best checkpoint (it appends ``.ckpt``).
    BEST_CHECKPOINT_NAME = "best"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def record(self) -> Path:
        return self.root / "record.json"

    @property
    def inputs(self) -> Path:
        return self.root / "inputs.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.tsv"

    @property
    def curves(self) -> Path:
        return self.root / "curves.png"

    #: Logger subdirectories (Lightning's ``name=``) under the run directory.
    LOGS_NAME = "logs"
    TENSORBOARD_NAME = "tensorboard"

    # ------------------------------------------------------- classification evaluation
    def eval_json(self, split: str) -> Path:
        return self.root / f"eval_{split}.json"

    def predictions(self, split: str) -> Path:
        return self.root / f"predictions_{split}.tsv"

    def eval_table(self, split: str, table: str) -> Path:
        """``eval_<split>_<table>.tsv`` with ``table`` one of subjects, per_class, confusion."""
        return self.root / f"eval_{split}_{table}.tsv"

    # ----------------------------------------------------------------- heatmaps
    def heatmaps(self, split: str) -> HeatmapLayout:
        """Where ``explain`` writes the heatmaps of ``split`` (``RUN/heatmaps/<split>``)."""
        return HeatmapLayout(self.root / "heatmaps" / split)

    def cam_eval(self, split: str) -> CamEvalLayout:
        """Where ``evaluate-cams`` writes its tables for ``split`` (``RUN/cam_eval/<split>``)."""
        return CamEvalLayout(self.root / "cam_eval" / split)


@dataclass(frozen=True)
class HeatmapLayout:
    """``RUN/heatmaps/<split>/``: the maps of one split, row i ↔ ``slices.tsv`` row i."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def slices(self) -> Path:
        return self.root / "slices.tsv"

    @property
    def meta(self) -> Path:
        """Written last: its presence marks a complete directory."""
        return self.root / "meta.json"

    def maps(self, method: str) -> Path:
        return self.root / f"{method}.npy"

    def ranges(self, method: str) -> Path:
        """Each map's (min, max) before its min-max scaling: ``(n, 2)`` float32, row i ↔ map i."""
        return self.root / f"{method}_range.npy"

    @property
    def overlays(self) -> Path:
        return self.root / "overlays"

    def overlay(self, method: str) -> Path:
        return self.overlays / f"{method}.png"

    @property
    def nifti(self) -> Path:
        return self.root / "nifti"

    def nifti_map(self, participant_id: str, method: str) -> Path:
        """The maps of one subject back-projected onto its source grid."""
        return self.nifti / f"{participant_id}_desc-{method}_heatmap.nii.gz"


@dataclass(frozen=True)
class CamEvalLayout:
    """``RUN/cam_eval/<split>/``: the heatmap evaluation of one split."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def summary(self) -> Path:
        """Written last: its presence marks a complete evaluation."""
        return self.root / "summary.json"

    def table(self, name: str) -> Path:
        """``<name>.tsv``: localization, lesion_hits, perturbation, faithfulness, sanity,
        consistency, regions, lobes, region_ranking, lobe_ranking, region_differences, atlas."""
        return self.root / f"{name}.tsv"

    @property
    def curves(self) -> Path:
        """Mean deletion / insertion curves (``<method>:<curve>`` arrays)."""
        return self.root / "curves.npz"

    @property
    def frequency(self) -> Path:
        """Frequency maps (``<method>:<class>`` arrays)."""
        return self.root / "frequency.npz"

    @property
    def sanity_maps(self) -> Path:
        """Maps of the first images at every randomization step (``images`` and
        ``<method>:<step>:<layer>`` arrays), for the report's figure."""
        return self.root / "sanity_maps.npz"

    def mni_mean(self, method: str, label: str) -> Path:
        """The mean heatmap of ``method`` over the subjects of class ``label``, in MNI space."""
        return self.root / f"mni_mean_{method}_{label}.nii.gz"

    def mni_means(self, method: str) -> list[Path]:
        """The existing :meth:`mni_mean` files of ``method``, sorted by name."""
        return sorted(self.root.glob(f"mni_mean_{method}_*.nii.gz"))

    def mni_mean_label(self, path: Path, method: str) -> str:
        """The class label of an :meth:`mni_mean` file name."""
        return path.name.removeprefix(f"mni_mean_{method}_").removesuffix(".nii.gz")
