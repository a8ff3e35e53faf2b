"""2.5D geometry: pixel → world mapping, upright centre slices, back-projection."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import torch

from braincam.data.slices import (
    AXES,
    SliceSpec,
    count_mask_slices,
)
from braincam.data.slicing import backproject, canonical_affine, extract_slices, isotropic_grid
from braincam.errors import ConfigError, InputError
from builders.slices import SHAPE, ZOOMS, lps_affine


def _coordinate_images(affine: np.ndarray) -> list[nib.Nifti1Image]:
    """Three volumes whose values are their own voxel index i, j and k."""
    ijk = np.indices(SHAPE).astype(np.float32)
    return [nib.Nifti1Image(ijk[c], affine) for c in range(3)]


def _pixel_grid(size: int) -> np.ndarray:
    r, c = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.stack([r.ravel(), c.ravel(), np.ones(size * size)])


def _source_voxels(affine: np.ndarray, m: np.ndarray, size: int) -> np.ndarray:
    """(3, size²) source voxel coordinates of every pixel centre via M and the inverse affine."""
    return (np.linalg.inv(affine) @ m @ _pixel_grid(size))[:3]


# ----------------------------------------------------------------------------------------------
# slice → volume mapping
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("angle", "permuted"), [(0.0, False), (5.0, False), (5.0, True)])
def test_pixel_maps_back_to_its_voxel_linear(angle: float, permuted: bool) -> None:
    """Linear interpolation of a linear function is exact: every interior pixel's (i, j, k) value
    must equal inv(affine) @ M @ [row, col, 1], for all three axes."""
    affine = lps_affine(angle, permuted)
    size = 48  # ≥ every padded side here, so the resize only upsamples (exact bilinear)
    sl = extract_slices(_coordinate_images(affine), SliceSpec(per_axis=8, size=size))
    assert sl.images.shape == (24, 3, size, size) and sl.images.dtype == np.float32
    assert set(sl.axes) == set(AXES)
    grid_inv = np.linalg.inv(sl.grid_affine)
    for axis in AXES:
        checked = 0
        for i in np.flatnonzero(np.asarray(sl.axes) == axis):
            vox = _source_voxels(affine, sl.pixel_to_world[i], size)
            iso = (grid_inv @ sl.pixel_to_world[i] @ _pixel_grid(size))[:3]
            # Interior: away from the volume's border (zero fill) and the square padding.
            interior = np.all((vox >= 2) & (vox <= np.array(SHAPE)[:, None] - 3), axis=0) & np.all(
                (iso >= 1) & (iso <= np.array(sl.grid_shape)[:, None] - 2), axis=0
            )
            got = sl.images[i].reshape(3, -1)[:, interior]
            np.testing.assert_allclose(got, vox[:, interior], atol=1e-3)
            # The slice position is the isotropic index along the fixed axis for every pixel.
            fixed = {"sagittal": 0, "coronal": 1, "axial": 2}[axis]
            np.testing.assert_allclose(iso[fixed], sl.positions[i], atol=1e-9)
            checked += int(interior.sum())
        assert checked > 8 * size * size * 0.25, axis  # a real part of every slice was checked


def test_pixel_maps_back_to_its_voxel_nearest_downsampled() -> None:
    """Nearest variant at size 32 (shrinking sagittal/coronal): each pixel holds the index of the
    voxel it came from, within half a source plus half an isotropic voxel of M's answer."""
    affine = lps_affine()
    size = 32
    sl = extract_slices(_coordinate_images(affine), SliceSpec(per_axis=8, size=size, order=0))
    tol = 0.5 + 0.5 * sl.voxel_size / np.asarray(ZOOMS) + 1e-6
    for i in range(len(sl)):
        vox = _source_voxels(affine, sl.pixel_to_world[i], size)
        # One voxel in from the border, where the nearest voxel may lie outside (zero fill).
        inside = np.all((vox >= 1) & (vox <= np.array(SHAPE)[:, None] - 2), axis=0)
        got = sl.images[i].reshape(3, -1)[:, inside]
        np.testing.assert_array_equal(got, np.round(got))  # values are voxel indices
        assert np.all(np.abs(got - vox[:, inside]) <= tol[:, None]), sl.axes[i]
        assert inside.mean() > 0.3


def test_slices_are_upright_and_centred() -> None:
    sl = extract_slices(_coordinate_images(lps_affine(0.0)), SliceSpec(per_axis=4, size=32))
    for i, axis in enumerate(sl.axes):
        down, right = sl.pixel_to_world[i][:3, 0], sl.pixel_to_world[i][:3, 1]
        # RAS world: row direction (down the image) and column direction (to the right).
        expect_down = {"axial": 1, "coronal": 2, "sagittal": 2}[axis]  # -y or -z
        expect_right = {"axial": 0, "coronal": 0, "sagittal": 1}[axis]  # +x or +y
        assert down[expect_down] < 0 and np.argmax(np.abs(down)) == expect_down
        assert right[expect_right] > 0 and np.argmax(np.abs(right)) == expect_right
    grid_shape = np.asarray(sl.grid_shape)
    for axis, fixed in (("sagittal", 0), ("coronal", 1), ("axial", 2)):
        pos = sl.positions[np.asarray(sl.axes) == axis]
        assert np.all(np.diff(pos) == 1)
        assert abs(pos.mean() - (grid_shape[fixed] - 1) / 2) <= 0.5


def test_isotropic_grid_keeps_field_of_view() -> None:
    affine = lps_affine()
    grid, shape, v = isotropic_grid(affine, SHAPE)
    assert v == min(ZOOMS)
    assert shape == (30, 24, 36)
    np.testing.assert_allclose(np.sqrt((grid[:3, :3] ** 2).sum(0)), v)
    centre_src = affine @ np.r_[(np.array(SHAPE) - 1) / 2, 1]
    centre_iso = grid @ np.r_[(np.array(shape) - 1) / 2, 1]
    np.testing.assert_allclose(centre_iso, centre_src, atol=1e-9)
    # RAS+: the grid's axes point (mostly) along +x, +y, +z.
    assert np.all(np.diag(grid[:3, :3]) > 0)
    _, shape2, v2 = isotropic_grid(affine, SHAPE, voxel_size=2.0)
    assert v2 == 2.0 and shape2 == (15, 12, 18)
    # Permuted storage: same canonical orientation as nibabel's, extent kept per world axis.
    permuted = lps_affine(5.0, permuted=True)
    img = nib.Nifti1Image(np.zeros(SHAPE, np.float32), permuted)
    canon = nib.as_closest_canonical(img)
    np.testing.assert_allclose(canonical_affine(permuted, SHAPE), canon.affine)
    grid3, shape3, _ = isotropic_grid(permuted, SHAPE)
    extent = np.array(canon.shape) * np.sqrt((canon.affine[:3, :3] ** 2).sum(0))
    np.testing.assert_allclose(np.array(shape3) * v, extent, atol=0.5 * v)
    assert np.all(np.diag(grid3[:3, :3]) > 0)


@pytest.mark.parametrize(
    ("axis", "weights"), [("axial", (1, 2, 0)), ("coronal", (1, 0, 3)), ("sagittal", (0, 2, 1))]
)
def test_backproject_inverts_extract_on_covered_voxels(axis: str, weights: tuple) -> None:
    """A volume constant along the slice normal comes back exactly on the source grid."""
    affine = lps_affine()
    ijk = np.indices(SHAPE).astype(np.float32)
    vol = np.tensordot(np.asarray(weights, np.float32), ijk, axes=1)
    sl = extract_slices(
        [nib.Nifti1Image(vol, affine)], SliceSpec(axes=(axis,), per_axis=8, size=48)
    )
    back, count = backproject(
        torch.from_numpy(sl.images[:, 0]), sl.pixel_to_world, affine, SHAPE, return_count=True
    )
    assert back.shape == SHAPE
    covered = count > 0
    assert np.array_equal(np.isfinite(back), covered)  # NaN exactly where nothing projects
    interior = np.zeros(SHAPE, dtype=bool)
    interior[2:-2, 2:-2, 2:-2] = True
    assert (covered & interior).sum() > 500
    np.testing.assert_allclose(back[covered & interior], vol[covered & interior], atol=1e-3)
    # Coverage is the slab of the 8 slices along the normal (8 mm): not the whole volume.
    fixed_src = {"axial": 2, "coronal": 1, "sagittal": 0}[axis]
    along = np.flatnonzero(covered.any(axis=tuple(d for d in range(3) if d != fixed_src)))
    extent_mm = (along.max() - along.min() + 1) * ZOOMS[fixed_src]
    assert 8.0 <= extent_mm <= 8.0 + 2 * ZOOMS[fixed_src]
    assert not covered.all()


def test_backproject_onto_isotropic_grid_all_axes() -> None:
    """On the isotropic grid each plane passes through voxel centres: exact for linear data."""
    affine = lps_affine()
    ijk = np.indices(SHAPE).astype(np.float32)
    sl = extract_slices([nib.Nifti1Image(ijk[0] + 2 * ijk[1] + 3 * ijk[2], affine)],
                        SliceSpec(per_axis=6, size=48))  # fmt: skip
    back, count = backproject(
        sl.images[:, 0], sl.pixel_to_world, sl.grid_affine, sl.grid_shape, return_count=True
    )
    iso = np.indices(sl.grid_shape).reshape(3, -1)
    src = (np.linalg.inv(affine) @ sl.grid_affine @ np.vstack([iso, np.ones(iso.shape[1])]))[:3]
    expected = (src[0] + 2 * src[1] + 3 * src[2]).reshape(sl.grid_shape)
    inside = np.all((src >= 2) & (src <= np.array(SHAPE)[:, None] - 3), axis=0)
    sel = (count > 0) & inside.reshape(sl.grid_shape)
    assert sel.sum() > 500 and count.max() == 3  # three orthogonal slabs meet
    np.testing.assert_allclose(back[sel], expected[sel], atol=1e-3)
    # Each voxel covered by an axial slice lies on one of its positions.
    axial_pos = sl.positions[np.asarray(sl.axes) == "axial"]
    only_axial = backproject(
        sl.images[np.asarray(sl.axes) == "axial", 0],
        sl.pixel_to_world[np.asarray(sl.axes) == "axial"],
        sl.grid_affine,
        sl.grid_shape,
    )
    assert set(np.flatnonzero(np.isfinite(only_axial).any(axis=(0, 1)))) == set(axial_pos)


def test_backproject_thickness_fills_slab_and_validates() -> None:
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    vol = np.ones((12, 12, 12), np.float32)
    spec = SliceSpec(axes=("axial",), per_axis=1, size=24, voxel_size=3.0)
    sl = extract_slices([nib.Nifti1Image(vol, affine)], spec)
    thin = backproject(sl.images[:, 0], sl.pixel_to_world, affine, vol.shape)
    thick = backproject(sl.images[:, 0], sl.pixel_to_world, affine, vol.shape, thickness=3.0)
    planes_thin = np.flatnonzero(np.isfinite(thin).any(axis=(0, 1)))
    planes_thick = np.flatnonzero(np.isfinite(thick).any(axis=(0, 1)))
    assert len(planes_thin) == 1 and len(planes_thick) == 3
    assert set(planes_thin) < set(planes_thick)
    with pytest.raises(InputError):
        backproject(sl.images[:, 0], sl.pixel_to_world[:0], affine, vol.shape)


def test_mask_slices_follow_the_image() -> None:
    """Masks use the same nearest chain as an order-0 image: mask == (i-channel > 10)."""
    affine = lps_affine()
    imgs = _coordinate_images(affine)
    mask = nib.Nifti1Image((np.indices(SHAPE)[0] > 10).astype(np.uint8), affine)
    sl = extract_slices(imgs, SliceSpec(per_axis=6, size=32, order=0), mask=mask)
    assert sl.masks is not None and sl.masks.dtype == np.uint8
    np.testing.assert_array_equal(sl.masks, (sl.images[:, 0] > 10).astype(np.uint8))
    np.testing.assert_array_equal(sl.mask_pixels, sl.masks.reshape(len(sl), -1).sum(1))
    assert count_mask_slices(sl) == int((sl.mask_pixels > 0).sum())
    # Sagittal slices are normal to i: the centre ones straddle i = 10, so some miss the mask.
    assert 0 < count_mask_slices(sl) < len(sl)


def test_extract_rejects_bad_input() -> None:
    affine = lps_affine()
    with pytest.raises(InputError, match="slices"):
        extract_slices(_coordinate_images(affine)[:1], SliceSpec(per_axis=40, size=32))
    bad = np.zeros(SHAPE, np.float32)
    bad[3, 3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        extract_slices([nib.Nifti1Image(bad, affine)], SliceSpec(per_axis=2, size=16))
    with pytest.raises(InputError, match="3D"):
        extract_slices([nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), affine)], SliceSpec())


@pytest.mark.parametrize(
    "kwargs",
    [{"axes": ("axial", "axial")}, {"axes": ("top",)}, {"per_axis": 0}, {"size": 1.5},
     {"voxel_size": -1.0}, {"order": 3}, {"step": 0}],
)  # fmt: skip
def test_slice_spec_validation(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SliceSpec(**kwargs)
