"""braincam's BIDS derivatives: ``WORK/derivatives/braincam/`` and its housekeeping."""

from __future__ import annotations

from pathlib import Path

from braincam.io import write_json

PIPELINE = "braincam"


def derivatives_root(work_dir: str | Path) -> Path:
    """``WORK/derivatives/braincam``."""
    return Path(work_dir) / "derivatives" / PIPELINE


def remove_stale_temps(folder: Path, *, recursive: bool = True) -> list[Path]:
    """Delete temp files left by a killed run (``atomic_path`` names: ``.NAME.XXXX.tmp...``)."""
    removed = []
    if folder.is_dir():
        for p in (folder.rglob if recursive else folder.glob)(".*.tmp*"):
            if p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def write_dataset_description(work_dir: str | Path) -> Path:
    """``WORK/derivatives/braincam/dataset_description.json`` (BIDS derivative)."""
    import braincam

    return write_json(
        derivatives_root(work_dir) / "dataset_description.json",
        {
            "Name": "braincam DTI maps",
            "BIDSVersion": "1.9.0",
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "braincam", "Version": braincam.__version__}],
        },
    )
