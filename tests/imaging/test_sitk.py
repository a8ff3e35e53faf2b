"""NIfTI ↔ SimpleITK: geometry and transforms."""

from __future__ import annotations

import numpy as np

from braincam.imaging.sitk import from_sitk, ras_to_sitk_transform, sitk_to_ras_matrix, to_sitk
from builders.geometry import LAS, rigid


def test_sitk_geometry_matches_nibabel_and_round_trips() -> None:
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    img = to_sitk(data, LAS)
    assert np.array_equal(from_sitk(img), data)
    ras = LAS @ np.array([2.0, 3.0, 4.0, 1.0])
    lps = img.TransformIndexToPhysicalPoint([2, 3, 4])
    assert np.allclose(lps, [-ras[0], -ras[1], ras[2]])
    m = rigid((3.0, -2.0, 1.0), (1.5, -0.5, 2.0), (10.0, -20.0, 5.0))
    assert np.allclose(sitk_to_ras_matrix(ras_to_sitk_transform(m)), m, atol=1e-9)


def test_many_points_through_an_affine_use_its_matrix_and_others_go_point_by_point() -> None:
    """transform_points on 500 points: an affine transform (as a registration returns it) gives
    the same points as one TransformPoint call each; a non-affine transform (a displacement
    field) is not mistaken for one — it also matches point by point, where the affine fitted
    to its basis points would be off by millimetres (the control)."""
    import SimpleITK as sitk

    from braincam.imaging.sitk import transform_points

    rng = np.random.default_rng(0)
    pts = rng.uniform(-80, 80, (500, 3))
    flip = np.array([-1.0, -1.0, 1.0])

    def one_by_one(t: sitk.Transform) -> np.ndarray:
        return np.array([t.TransformPoint((p * flip).tolist()) for p in pts]) * flip

    affine = sitk.AffineTransform(3)
    affine.SetMatrix([1.05, 0.1, 0.0, -0.08, 0.97, 0.05, 0.02, 0.0, 1.1])
    affine.SetTranslation([3.0, -7.0, 2.5])
    affine.SetCenter([1.0, 2.0, 3.0])
    np.testing.assert_allclose(transform_points(affine, pts), one_by_one(affine), atol=1e-9)
    field = sitk.Image([40, 40, 40], sitk.sitkVectorFloat64, 3)
    field.SetOrigin([-100.0] * 3)
    field.SetSpacing([5.0] * 3)
    arr = sitk.GetArrayFromImage(field)
    zz = np.arange(40)[:, None, None] * 5.0 - 100.0
    arr[..., 0] = 6.0 * np.sin(zz / 30.0)  # x moves with z, non-linearly
    warped = sitk.GetImageFromArray(arr, isVector=True)
    warped.CopyInformation(field)
    bent = sitk.DisplacementFieldTransform(warped)
    got = transform_points(bent, pts)
    np.testing.assert_allclose(got, one_by_one(bent), atol=1e-9)
    straight = transform_points(bent, pts[:3])  # below the matrix threshold: point by point
    np.testing.assert_allclose(straight, one_by_one(bent)[:3], atol=1e-9)
    assert np.abs(got - pts).max() > 1.0  # the field moves the points
    basis = np.vstack([np.zeros(3), 100.0 * np.eye(3)])
    image = transform_points(bent, basis)
    fitted = pts @ ((image[1:] - image[0]).T / 100.0).T + image[0]
    assert np.abs(fitted - got).max() > 1.0
