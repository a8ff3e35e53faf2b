"""The schema of ``summary.json``: one pydantic model per section (see docs/summary-schema.md).

Every section is validated when a step writes it (:func:`update_summary`, here and not in
:mod:`braincam.io`: io is the bottom layer and stays schema-free; this module sits just above
it, below every step and the report) and the
report reads results only through :func:`load_summary`. Models are strict: a verdict is a JSON
boolean, a figure a number or null; the string ``"False"`` (truthy in Python, and once printed
as "FLAGGED" by the report) or a number stored as text is rejected.

Tabular parts whose columns depend on the metric set (localization rows, lobe rankings) are
:class:`Row` objects: named required keys, and any further column a scalar.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError, model_validator

from braincam.errors import BraincamError
from braincam.io import read_json, to_jsonable, write_json

#: The heatmap-check families of ``evaluate-cams`` (its sections; ``cams.checks`` names them).
CheckName = Literal[
    "localization",
    "lesion_hits",
    "localization_effects",
    "perturbation",
    "faithfulness",
    "sanity",
    "shortcut",
    "consistency",
    "regions",
]
CHECK_NAMES: tuple[str, ...] = get_args(CheckName)

#: Granularity of the sanity check's randomization cascade (:mod:`braincam.metrics.sanity`).
SanityCascade = Literal["layers", "blocks", "full"]

#: The check family each per-method verdict is made from: the report shows "not run" for the
#: verdict of a family the evaluation skipped.
VERDICT_CHECKS: dict[str, str] = {
    "inside_brain": "shortcut",
    "localizes": "localization",
    "faithful": "faithfulness",
    "randomization": "sanity",
    "perturbation": "perturbation",
}

__all__ = [
    "CamEvaluation",
    "SchemaError",
    "Summary",
    "load_summary",
    "update_summary",
    "validate_cam_evaluation",
    "validate_section",
    "validate_summary",
]


class SchemaError(BraincamError, ValueError):
    """A result that does not match the summary schema (a bug where it was made, or a
    summary.json edited by hand); the message names the section and the field."""


Number = float | None  # strict float accepts JSON integers too; never a string
Scalar = bool | int | float | str | None

#: strings that mean a value was stringified on the way to JSON (a str() fallback)
_STRINGIFIED = {"True", "False", "nan", "NaN", "inf", "-inf", "None"}


def _no_stringified(value: Any, where: str = "") -> None:
    if isinstance(value, str) and value in _STRINGIFIED:
        raise ValueError(f"{where or 'value'}: {value!r} is a stringified value, not JSON data")
    if isinstance(value, dict):
        for k, v in value.items():
            _no_stringified(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _no_stringified(v, f"{where}[{i}]")


class _Model(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_stringified(cls, data: Any) -> Any:
        _no_stringified(data)
        return data


class Row(_Model):
    """A table row: any further column must be a scalar (bool, number, text or null)."""

    model_config = ConfigDict(strict=True, extra="allow", frozen=True)

    @model_validator(mode="after")
    def _scalars(self) -> Row:
        for key, value in (self.model_extra or {}).items():
            if not (value is None or isinstance(value, bool | int | float | str)):
                raise ValueError(f"column {key!r} must be a scalar, got {type(value).__name__}")
        return self


# ------------------------------------------------------------------------------- prepare


class Source(_Model):
    type: str
    path: str


class SubjectCounts(_Model):
    ingested: int
    computed: int
    skipped: int
    failed: int


class Participant(_Model):
    participant_id: str
    label: str | None
    session: str | None
    run: str | None
    dwi: str | None
    anat: dict[str, str] | None
    status: str
    fa: str | None
    split: str | None
    slices: int
    ground_truth_mask: str | None
    mask_slices: int | None
    seconds: Number
    peak_rss_mib: Number


class FailureRow(_Model):
    participant_id: str
    step: str
    file: str | None
    error: str


class PrepareSection(_Model):
    source: Source
    label_column: str | None
    classes: list[str]
    subjects: list[str]
    n_subjects: SubjectCounts
    participants: list[Participant]
    splits: dict[str, list[str]]
    slices_per_split: dict[str, int]
    mask_slices: dict[str, int]
    slice_store: dict[str, JsonValue] | None
    volume_store: dict[str, JsonValue] | None = None  # representation: volume
    failures: list[FailureRow]
    outputs: dict[str, str | None]
    parameters: dict[str, JsonValue]
    timing: dict[str, float]
    versions: dict[str, str]
    registration: dict[str, JsonValue] | None = None


# -------------------------------------------------------------------- training, evaluation


class TrainingEntry(_Model):
    model: str
    run_dir: str
    best_epoch: int | None
    epochs_run: int
    best_val_loss: Number
    best_val_acc: Number
    classes: list[str]
    subjects: dict[str, int]
    seed: int


class SplitEvaluation(_Model):
    loss: Number
    slice_accuracy: Number
    auc: Number
    subject_accuracy: Number
    subjects: int | None
    subjects_correct: int | None
    slices: int


class EvaluationEntry(_Model):
    model: str
    train: SplitEvaluation | None = None
    val: SplitEvaluation | None = None
    test: SplitEvaluation | None = None


class ComparisonRow(_Model):
    run: str
    model: str
    best_epoch: int | None
    val_slice_acc: Number
    val_subject_acc: Number
    val_auc: Number
    test_slice_acc: Number
    test_subject_acc: Number
    test_auc: Number


# ---------------------------------------------------------------------- cam_evaluation


class LocalizationRow(Row):
    model: str
    method: str
    level: str
    n_scored: int
    n_excluded: int


class LesionBin(_Model):
    """Lesions of one equivalent-diameter bin (``high_mm`` None: open-ended) and how many a
    map hits; ``hit_rate`` is None for an empty bin."""

    low_mm: float
    high_mm: float | None
    n_lesions: int
    n_hit: int
    hit_rate: Number


class LesionHitSection(_Model):
    """The lesion-level hit rate (:mod:`braincam.metrics.lesions`): ``levels[level][method]
    [bin]``, bins named ``all``, ``0-3mm``, …, ``10mm+``; methods include the baselines."""

    rule: str
    connectivity: str
    bins_mm: list[float]
    levels: dict[str, dict[str, dict[str, LesionBin]]]


class Comparison(_Model):
    """A region's drop of the target-class probability against area-matched random regions."""

    n_images: int
    n_random_per_image: int
    n_random: int
    region_drop: Number
    random_drop: Number
    mean_difference: Number
    ci_low: Number
    ci_high: Number
    effect_size: Number
    p_value: Number
    region_ci_low: Number
    hurts_more: bool


class DosePoint(_Model):
    strength: float
    region_drop: Number
    random_drop: Number
    mean_difference: Number
    ci_low: Number
    ci_high: Number


class RegionTest(_Model):
    """One region family (a CAM method's regions, or a control region) under perturbation."""

    region: str
    comparison: Comparison
    per_class: dict[str, Comparison]
    dose_response: list[DosePoint]


class MethodPerturbation(RegionTest):
    hurts_more_than_random: bool
    random_overlap_mean: Number
    translation: dict[str, Number]


class PerturbationRow(Row):
    model: str
    method: str
    condition: str
    strength: Number
    n: int


class PerturbationSection(_Model):
    rule: str
    settings: dict[str, JsonValue]
    conditions: list[PerturbationRow]
    methods: dict[str, MethodPerturbation]
    positive_control: bool | None
    negative_control: bool | None
    controls: dict[str, RegionTest]


class FaithfulnessRow(_Model):
    model: str
    method: str
    curve: str
    auc: Number
    n: int


class SanityStep(_Model):
    step: int
    layer: str
    spearman_mean: Number
    spearman_abs_mean: Number
    ssim_mean: Number


class SanityEntry(_Model):
    flagged: bool
    rule: str
    threshold: float
    final_spearman: Number
    final_spearman_abs: Number
    final_ssim: Number
    random_pairs_ssim: Number
    random_pairs_spearman: Number
    n_images: int
    steps: list[SanityStep]
    cascade: SanityCascade = "layers"  # absent in evaluations written before the option


class ConsistencyRow(_Model):
    level: str
    method: str | None  # None for the across-methods level
    mean_r: Number


class AtlasInfo(_Model):
    atlas: str
    source: str
    licence: str


class RegionsSummary(_Model):
    atlas: AtlasInfo
    top_lobes: list[Row]


class ShortcutPart(_Model):
    """Outside the brain, or in the head's rim: mean mass and area shares, the excess."""

    mass: Number
    area: Number
    excess: Number
    ci_low: Number
    ci_high: Number
    fires: bool | None


class ShortcutEntry(_Model):
    outside_brain: ShortcutPart
    rim: ShortcutPart
    alarm: bool | None
    n_maps: int
    rim_pixels: int
    rule: str


class ShortcutSection(_Model):
    """The shortcut alarm: heatmap mass outside the brain per method (and a uniform map)."""

    rim_mm: float
    pixel_mm: float
    methods: dict[str, ShortcutEntry]
    alarm: bool
    alarm_methods: list[str]


class Verdict(_Model):
    """One cell of the report's verdict table: the figure, its chance baseline, the verdict."""

    metric: str
    figure: Number
    baseline: Number
    verdict: bool | None
    rule: str
    ci_low: Number = None
    ci_high: Number = None


class MethodVerdicts(_Model):
    inside_brain: Verdict | None = None  # absent in evaluations written before the alarm
    localizes: Verdict
    faithful: Verdict
    randomization: Verdict
    perturbation: Verdict


class CamEvaluation(_Model):
    """``cam_evaluation[<run>]`` and ``RUN/cam_eval/<split>/summary.json``."""

    model: str
    split: str
    config: dict[str, JsonValue]
    localization: list[LocalizationRow] | None = None
    lesion_hits: LesionHitSection | None = None  # lesion masks only
    localization_effects: list[LocalizationRow] | None = None  # + ground_truth: the effect
    perturbation: PerturbationSection | None = None
    faithfulness: list[FaithfulnessRow] | None = None
    sanity: dict[str, SanityEntry] | None = None
    shortcut: ShortcutSection | None = None
    consistency: list[ConsistencyRow] | None = None
    regions: RegionsSummary | None = None
    verdicts: dict[str, MethodVerdicts] | None = None
    seconds: dict[str, float]
    # The families ``cams.checks`` left out: their sections are null and the report says "not
    # run" (absent in evaluations written before the option: nothing was skipped then).
    skipped: list[CheckName] = []


# ---------------------------------------------------------------------------------- demo


class DemoSection(_Model):
    report: str
    runs: list[str]
    methods: list[str]
    seconds: float


class Summary(_Model):
    """The whole file: every section optional (a step adds its own)."""

    prepare: PrepareSection | None = None
    training: dict[str, TrainingEntry] | None = None
    evaluation: dict[str, EvaluationEntry] | None = None
    comparison: list[ComparisonRow] | None = None
    cam_evaluation: dict[str, CamEvaluation] | None = None
    demo: DemoSection | None = None


SECTIONS = tuple(Summary.model_fields)


def validate_section(section: str, data: Any) -> Any:
    """Check one section against its model; return ``data`` unchanged (raise ``InputError``)."""
    if section not in Summary.model_fields:
        raise SchemaError(
            f"summary.json has no section {section!r} (sections: {', '.join(SECTIONS)})"
        )
    try:
        Summary.model_validate({section: data})
    except ValidationError as exc:
        raise SchemaError(
            f"summary.json section {section!r} does not match its schema:\n{exc}"
        ) from None
    return data


def validate_cam_evaluation(data: Any) -> CamEvaluation:
    """One run's heatmap evaluation (``RUN/cam_eval/<split>/summary.json``)."""
    try:
        return CamEvaluation.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(f"cam_evaluation does not match its schema:\n{exc}") from None


def validate_summary(data: Any) -> Summary:
    """The whole summary as a :class:`Summary` (raise ``InputError`` when it does not match)."""
    try:
        return Summary.model_validate(data)
    except ValidationError as exc:
        raise SchemaError(f"summary.json does not match its schema:\n{exc}") from None


def load_summary(path: str | Path) -> Summary:
    """Read and validate ``summary.json`` (an empty summary when the file does not exist)."""
    import json

    path = Path(path)
    if not path.is_file():
        return Summary()
    try:
        return validate_summary(json.loads(path.read_text()))
    except SchemaError as exc:
        raise SchemaError(f"{path}: {exc}") from None


def update_summary(work_dir: str | Path, section: str, data: Any) -> Path:
    """Set ``summary.json[section] = data`` in ``work_dir``, keeping the other sections.

    Every step of the pipeline adds its own section; the new section is validated against the
    schema (``docs/summary-schema.md``) before anything is written, so a wrongly typed result
    fails where it is made, not in the report.
    """
    path = Path(work_dir) / "summary.json"
    summary = read_json(path) if path.exists() else {}
    summary[section] = validate_section(section, to_jsonable(data))
    return write_json(path, summary)
