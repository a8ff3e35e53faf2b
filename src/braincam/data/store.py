"""What the slice store and the volume store share: an index of rows and their metadata.

Both stores (:class:`braincam.data.slices.SliceStore`, :class:`braincam.data.volumes.VolumeStore`)
keep one ``index.tsv`` row per ``images`` row (a slice, or a subject's volume) and the classes and
channel count in ``meta.json``; training and evaluation ask both the same questions here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["IndexedStore"]


class IndexedStore:
    """Row selection and metadata of a store with ``index`` and ``meta`` attributes."""

    index: pd.DataFrame
    meta: dict[str, Any]

    def __len__(self) -> int:
        return len(self.index)

    @property
    def classes(self) -> list[str]:
        """Label names in target order."""
        return list(self.meta["classes"])

    @property
    def channels(self) -> int:
        return int(self.meta["channels"])

    def subjects(self, split: str | None = None) -> list[str]:
        """Participant ids in store order, optionally of one split."""
        return list(dict.fromkeys(self.rows(split=split)["participant_id"]))

    def rows(self, split: str | None = None, participant_id: str | None = None) -> pd.DataFrame:
        """Index rows (their index labels are row numbers into ``images``), filtered."""
        keep = np.ones(len(self.index), dtype=bool)
        if split is not None:
            keep &= (self.index["split"] == split).to_numpy()
        if participant_id is not None:
            keep &= (self.index["participant_id"] == participant_id).to_numpy()
        return self.index[keep]
