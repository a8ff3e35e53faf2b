"""Small geometry inputs: an LAS affine with 4 mm voxels and rigid transforms about a centre."""

from __future__ import annotations

import numpy as np

from braincam.synth.anatomy import rotation_matrix

LAS = np.array([[-4.0, 0, 0, 90], [0, 4, 0, -120], [0, 0, 4, -70], [0, 0, 0, 1]])


def rigid(deg: tuple[float, float, float], mm: tuple[float, float, float], centre) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation_matrix(np.deg2rad(deg))
    m[:3, 3] = np.asarray(centre) + np.asarray(mm) - m[:3, :3] @ np.asarray(centre)
    return m
