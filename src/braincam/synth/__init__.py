"""Synthetic cohorts with known ground truth, and their registry (the synth seam).

``get_generator("dwi")`` (young/old diffusion MRI, :mod:`.dwi`) and ``get_generator("anat")``
(T1w/T2w/FLAIR with MS-like lesions, :mod:`.anat`) return a :class:`Generator`: its config
class, its ``synthesize`` function and the ``braincam synth`` options it takes. This registry
is the only place that maps a ``kind`` to code; ``--kind structural`` (the old name of
``anat``) is accepted with a deprecation message. Shared pieces live in :mod:`.common` and the
template anatomy in :mod:`.anatomy`. Preprocessing and evaluation never import this package;
what they share with it (template, ground-truth file names) is in :mod:`braincam.imaging`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from braincam.names import canonical_name


@dataclass(frozen=True)
class Generator:
    """A synthetic-cohort generator as ``braincam synth`` and ``braincam run`` see it."""

    kind: str
    module: str  # imported on first use: generators pull the template machinery
    config_name: str  # its config dataclass (validated by ``.validate()``)
    synthesize_name: str  # ``f(out_dir, config, *, overwrite, progress, workers) -> Path``
    cli_options: tuple[str, ...]  # the ``braincam synth`` options that set its config
    contents: str = ""  # what a subject holds, for the CLI's closing message

    @property
    def config_class(self) -> type:
        return getattr(import_module(self.module), self.config_name)

    @property
    def synthesize(self) -> Callable[..., Any]:
        return getattr(import_module(self.module), self.synthesize_name)

    def config_from_options(self, options: dict[str, Any]) -> Any:
        """The config made from the CLI's options that this generator takes."""
        return self.config_class(**{k: options[k] for k in self.cli_options if k in options})


_COMMON = ("subjects", "seed", "voxel_size", "warp_mm", "orientation")
GENERATORS: dict[str, Generator] = {
    "dwi": Generator(
        "dwi",
        "braincam.synth.dwi",
        "SynthConfig",
        "synthesize",
        (
            *_COMMON,
            "snr",
            "directions",
            "b0_volumes",
            "bvalue",
            "effect_size",
            "effect_region",
            "global_fa_change",
            "global_md_change",
            "atrophy",
        ),
    ),
    "anat": Generator(
        "anat",
        "braincam.synth.anat",
        "AnatSynthConfig",
        "synthesize_anat",
        (
            *_COMMON,
            "groups",
            "bias_strength",
            "misregistration_deg",
            "misregistration_mm",
            "head",
        ),
        contents="T1w/T2w/FLAIR",
    ),
}


def generator_kinds() -> tuple[str, ...]:
    """Registered kinds (``dwi``, ``anat``)."""
    return tuple(GENERATORS)


def get_generator(
    kind: str, *, what: str = "kind", warn: Callable[[str], None] | None = None
) -> Generator:
    """The generator of ``kind`` (``structural`` → ``anat`` with a deprecation message);
    ConfigError naming ``what`` (the option or key) and the valid kinds otherwise."""
    return GENERATORS[canonical_name(kind, generator_kinds(), what=what, warn=warn)]


def generator_for(config: Any) -> Generator:
    """The generator whose config class ``config`` is an instance of."""
    for gen in GENERATORS.values():
        if isinstance(config, gen.config_class):
            return gen
    raise TypeError(f"no synthetic generator takes a {type(config).__name__}")
