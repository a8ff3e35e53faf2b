"""What a run records about itself: library versions (checkpoints, sidecars, summary.json)."""

from __future__ import annotations

import platform
import resource
import sys
from importlib import metadata

_LIBRARIES = (
    "braincam",
    "numpy",
    "scipy",
    "nibabel",
    "dipy",
    "SimpleITK",
    "scikit-image",
    "nilearn",
    "torch",
    "torchvision",
    "lightning",
)


def library_versions() -> dict[str, str]:
    """Installed versions of braincam and its main dependencies (``"absent"`` if missing)."""
    versions = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far (its high-water mark), MiB."""
    # ru_maxrss is KiB on Linux, bytes on macOS.
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024
