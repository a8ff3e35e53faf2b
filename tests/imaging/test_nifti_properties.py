"""Issue 12: property-based checks — any NIfTI header or gradient text gives a clear error
(InputError naming subject and file) or a valid result, never another exception."""

from __future__ import annotations

import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braincam.errors import InputError
from braincam.modalities.dwi.validate import check_dwi_header, load_dwi_data, read_gradients

SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
DTYPES = [np.uint8, np.int16, np.int32, np.float32, np.float64, np.complex64, np.bool_, np.int8]


@st.composite
def headers(draw: st.DrawFn) -> tuple[tuple[int, ...], np.dtype, list[float], np.ndarray, bool]:
    ndim = draw(st.integers(1, 5))
    small = st.integers(1, 4)
    shape = tuple(draw(small) for _ in range(ndim))
    absurd = draw(st.booleans())
    if absurd:  # header-only file claiming a huge image: must hit the size cap
        shape = (*shape[:3], *(1,) * max(0, 3 - ndim), 60)
        shape = (4096, 4096, 2048, *shape[3:])
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    zoom = st.sampled_from([2.0, 1.0, 0.0, -1.5, float("nan"), float("inf"), 1e-30])
    zooms = [draw(zoom) for _ in range(3)]
    kind = draw(st.sampled_from(["diag", "singular", "nan", "random"]))
    affine = np.diag([*[abs(z) if np.isfinite(z) else 1.0 for z in zooms], 1.0])
    if kind == "singular":
        affine[2, :3] = 0.0
    elif kind == "nan":
        affine[0, 3] = np.nan
    elif kind == "random":
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        affine[:3, :3] = rng.normal(size=(3, 3))
    return shape, dtype, zooms, affine, absurd


def _write(folder: Path, shape, dtype, zooms, affine, absurd) -> Path:
    header = nib.Nifti1Header()
    header.set_data_dtype(np.uint8 if dtype == np.bool_ else dtype)
    header.set_data_shape(shape)
    pixdim = header["pixdim"]
    pixdim[1 : 1 + min(3, len(shape))] = zooms[: min(3, len(shape))]
    header["pixdim"] = pixdim
    header["sform_code"], header["qform_code"] = 1, 0
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[0], affine[1], affine[2]
    header["vox_offset"] = 352
    path = folder / "dwi.nii"
    n = 0 if absurd else int(np.prod(shape)) * np.dtype(header.get_data_dtype()).itemsize
    with open(path, "wb") as f:
        f.write(header.binaryblock + b"\0" * 4 + b"\1" * n)
    return path


@SETTINGS
@given(headers())
def test_any_header_gives_a_clear_error_or_a_valid_dwi(case) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = _write(Path(tmp), *case)
        try:
            shape = check_dwi_header(path, subject="sub-01")
            _, data = load_dwi_data(path, subject="sub-01")
        except InputError as exc:
            assert "subject=sub-01" in str(exc) and str(path) in str(exc)
            if case[4] and len(case[0]) == 4:  # refused by the size cap, before any read
                assert "too large" in str(exc)
            return
        # Accepted: then it really is a sane 4D image (as written, not as nibabel fixes it).
        _, dtype, zooms, affine, absurd = case
        assert len(shape) == 4 and shape[3] >= 2 and data.shape == shape and not absurd
        assert np.isfinite(data).all() and dtype.kind in "biuf"
        assert all(np.isfinite(z) and z > 0 for z in zooms)
        assert np.isfinite(affine).all() and abs(np.linalg.det(affine[:3, :3])) > 1e-12


NUMBER = st.one_of(
    st.integers(-10, 3000).map(str),
    st.sampled_from(["nan", "inf", "-0", "1e3", "0.0", "1,000", "", "abc", "5;"]),
)
TEXT = st.lists(
    st.lists(NUMBER, min_size=0, max_size=8).map(lambda r: " ".join(r)), min_size=0, max_size=4
).map("\n".join)
SEP = st.sampled_from([" ", ",", "\t", ", "])


@SETTINGS
@given(bval=TEXT, bvec=TEXT, n=st.integers(1, 8), sep=SEP)
def test_any_gradient_text_gives_a_clear_error_or_a_valid_table(
    bval: str, bvec: str, n: int, sep: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        bval_path, bvec_path = Path(tmp) / "x.bval", Path(tmp) / "x.bvec"
        bval_path.write_text(bval.replace(" ", sep))
        bvec_path.write_text(bvec.replace(" ", sep))
        try:
            grads = read_gradients(bval_path, bvec_path, n, subject="sub-01")
        except InputError as exc:
            assert "subject=sub-01" in str(exc)
            assert str(bval_path) in str(exc) or str(bvec_path) in str(exc)
            return
        assert grads.bvals.shape == (n,) and grads.bvecs.shape == (n, 3)
        assert np.isfinite(grads.bvals).all() and (grads.bvals >= 0).all()
        assert np.isfinite(grads.bvecs).all() and (grads.bvals <= 50).any()


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "0 nan 1000", "0,0,1000", "0 1000\n0 1000", "0 1000 1000"],
    ids=["empty", "blank-lines", "nan", "commas", "two-rows", "wrong-count"],
)
def test_named_bval_cases(tmp_path: Path, text: str) -> None:
    bval, bvec = tmp_path / "x.bval", tmp_path / "x.bvec"
    bval.write_text(text)
    np.savetxt(bvec, np.array([[0, 1], [0, 0], [0, 0]]), fmt="%g")
    with pytest.raises(InputError, match="subject=sub-01"):
        read_gradients(bval, bvec, 2, subject="sub-01")
