"""A toy modality: one channel, the input file copied, for testing the runner and the seam."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from braincam.cohort.ingest import IngestResult
from braincam.errors import InputError
from braincam.imaging.hashing import file_sha256
from braincam.io import read_json, write_json
from braincam.modalities.base import Preprocessed, Step


@dataclass(frozen=True)
class ToyRecord:
    participant_id: str
    label: str
    image: Path
    mask: Path | None = None
    session: str | None = None
    run: str | None = None


@dataclass(frozen=True)
class ToyParams:
    gain: int = 1
    workers_seen: int = 0  # set by worker_params: shows the runner used it


class Toy:
    name = "toy"
    channels = ("copy",)
    outputs = "copies"
    progress_label = "Copying"

    def check_config(self, config: Any) -> None:
        pass

    def params(self, config: Any) -> ToyParams:
        return ToyParams()

    def worker_params(self, params: ToyParams, workers: int) -> ToyParams:
        return replace(params, workers_seen=workers)

    def ingest(self, data_dir: Path, config: Any) -> IngestResult:
        records = [ToyRecord(p.stem, "a", p) for p in sorted(Path(data_dir).glob("*.txt"))]
        return IngestResult(records, [], label_column="label", source=str(data_dir))

    def primary_input(self, record: ToyRecord) -> Path:
        return record.image

    def _out(self, work_dir: Path, record: ToyRecord) -> tuple[Path, Path]:
        base = Path(work_dir) / record.participant_id
        return base.with_suffix(".copy"), base.with_suffix(".json")

    def cache_key(self, record: ToyRecord, params: ToyParams) -> str:
        return f"{file_sha256(record.image)}-{params.gain}"

    def load_cached(self, record: ToyRecord, work_dir: Path, key: str) -> Preprocessed | None:
        copy, side = self._out(work_dir, record)
        if copy.is_file() and side.is_file() and read_json(side)["key"] == key:
            return Preprocessed((str(copy),), "", {"cached": True})
        return None

    def preprocess(
        self, record: ToyRecord, work_dir: Path, params: ToyParams, key: str, step: Step
    ) -> Preprocessed:
        step.name = "read"
        text = record.image.read_text()
        if "bad" in text:
            raise InputError("bad content", subject=record.participant_id)
        step.name = "write"
        copy, side = self._out(work_dir, record)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.image, copy)
        write_json(side, {"key": key, "workers_seen": params.workers_seen})
        return Preprocessed((str(copy),), "", {"cached": False})

    def input_files(self, record: ToyRecord) -> dict[str, Any]:
        return {"toy": str(record.image)}

    def summary(self, outcomes: Any) -> dict[str, Any]:
        return {"toy": len(outcomes)}


TOY = Toy()
