"""Binary volume masks."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage as ndi


def largest_component(mask: NDArray[np.bool_]) -> NDArray[np.bool_]:
    """The largest 6-connected component of a boolean volume (empty stays empty)."""
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(sizes.argmax())
