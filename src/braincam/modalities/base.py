"""The modality seam: what ``prepare`` needs from an imaging modality, and nothing more.

A :class:`Modality` finds and validates each subject's inputs (``ingest``), preprocesses one
subject into channel volumes + a brain mask + a typed record (``preprocess``; cached by
``cache_key``/``load_cached``), and names its channels. The batch over subjects — workers, Dask,
cache, resume, failures — is :mod:`braincam.cohort.runner`, the same for every modality; the
2.5D store, splits and summary are :mod:`braincam.pipeline.prepare`, also modality-blind.

Adding a modality means a folder under ``modalities/`` with one object implementing this
protocol, and one line in the registry (:mod:`braincam.modalities`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from braincam.cohort.ingest import IngestResult
    from braincam.cohort.runner import SubjectOutcome

#: The options of ``prepare`` a modality reads (``braincam.pipeline.prepare.PrepareConfig``);
#: named, not imported, so that modalities never import the pipeline above them.
PrepareConfig = Any


@dataclass
class Step:
    """The step a subject is in (``hash``, ``validate``, ``dti``...), named in a failure."""

    name: str = "hash"


@dataclass(frozen=True)
class Preprocessed:
    """One subject's preprocessing result (computed now, or read back from the cache).

    ``images``: the channel volumes in channel order (the slice store's channels), all on one
    grid; ``mask``: the brain mask on that grid; ``details``: the modality's typed record
    (``None`` when it has nothing to add, e.g. diffusion).
    """

    images: tuple[str, ...]
    mask: str
    details: Any = None


@runtime_checkable
class Modality(Protocol):
    """An imaging modality as ``prepare`` sees it (implemented by ``dwi`` and ``anat``)."""

    #: Registry name, also the BIDS datatype folder of its inputs and derivatives.
    name: str
    #: Names of the channel volumes, in the order of the slice store's channels.
    channels: tuple[str, ...]
    #: What the preprocessed volumes are called in messages ("FA maps", "T1w/T2w/FLAIR").
    outputs: str
    #: The progress bar's label while subjects are preprocessed.
    progress_label: str

    def check_config(self, config: PrepareConfig) -> None:
        """Raise ConfigError for options this modality cannot honour (e.g. a manifest)."""
        ...

    def params(self, config: PrepareConfig) -> Any:
        """The typed preprocessing parameters (validated) defined by ``config``."""
        ...

    def worker_params(self, params: Any, workers: int) -> Any:
        """``params`` as each of ``workers`` parallel processes should use them."""
        ...

    def ingest(self, data_dir: Path, config: PrepareConfig) -> IngestResult:
        """Find and header-check every subject's inputs; bad subjects become failures."""
        ...

    def primary_input(self, record: Any) -> Path:
        """The file a failure names when the error carries none."""
        ...

    def cache_key(self, record: Any, params: Any) -> str:
        """Hash of the inputs' content, the parameters and the library versions."""
        ...

    def load_cached(self, record: Any, work_dir: Path, key: str) -> Preprocessed | None:
        """The outputs of an earlier run with the same ``key``, or None."""
        ...

    def preprocess(
        self, record: Any, work_dir: Path, params: Any, key: str, step: Step
    ) -> Preprocessed:
        """Preprocess one subject into ``work_dir``'s derivatives (setting ``step.name`` as it
        goes); raises on bad input (the runner turns that into a failed outcome)."""
        ...

    def input_files(self, record: Any) -> dict[str, Any]:
        """The subject's inputs for ``summary.json`` (key: the modality's name)."""
        ...

    def summary(self, outcomes: Sequence[SubjectOutcome]) -> dict[str, Any]:
        """Extra ``prepare`` summary sections (e.g. ``registration``); may be empty."""
        ...
