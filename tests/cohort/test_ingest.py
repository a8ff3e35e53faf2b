"""Ingest helpers every modality shares: participant ids, labels, masks, failures."""

from __future__ import annotations

from braincam.cohort.ingest import normalize_participant


def test_normalize_participant() -> None:
    assert normalize_participant("01") == "sub-01"
    assert normalize_participant(" sub-abc ") == "sub-abc"
