"""dMRI preprocessing: FA/MD vs DIPY called directly, sidecars, cache key, data checks."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from braincam.cohort import runner
from braincam.errors import ConfigError
from braincam.modalities.dwi.dti import (
    DTIParams,
    cache_key,
    derivative_paths,
    input_hashes,
    is_cached,
    wls_fit_normal,
)
from braincam.modalities.dwi.ingest import SubjectRecord, ingest_bids
from braincam.modalities.dwi.modality import DWI
from builders.dwi import EVALS, LABELS, brain_ball, dwi_data, gradient_scheme, make_bids, write_dwi


def process_subject(record, work_dir, params, *, force=False):
    """One diffusion subject through the common batch runner."""
    return runner.process_subject(DWI, record, work_dir, params, force=force)


def _record(tmp_path: Path, **kwargs) -> SubjectRecord:
    paths = write_dwi(tmp_path / "in", "sub-01_dwi", **kwargs)
    shape = nib.load(paths["dwi"]).shape
    return SubjectRecord("sub-01", "young", paths["dwi"], paths["bval"], paths["bvec"], shape)


def _dipy_direct(record: SubjectRecord, params: DTIParams) -> tuple[np.ndarray, ...]:
    """What a user would write with DIPY alone (the reference for braincam's maps)."""
    from dipy.core.gradients import gradient_table
    from dipy.io.gradients import read_bvals_bvecs
    from dipy.reconst.dti import TensorModel
    from dipy.segment.mask import median_otsu

    data = nib.load(record.dwi).get_fdata()
    bvals, bvecs = read_bvals_bvecs(str(record.bval), str(record.bvec))
    gtab = gradient_table(bvals, bvecs=bvecs, b0_threshold=params.b0_threshold)
    mean_b0 = data[..., gtab.b0s_mask].mean(axis=-1)
    _, mask = median_otsu(mean_b0, median_radius=params.median_radius, numpass=params.numpass)
    fit = TensorModel(gtab, fit_method=params.fit_method).fit(data, mask=mask)
    return mask, fit.fa, fit.md


@pytest.mark.parametrize("method", ["WLS", "OLS"])
def test_fa_matches_dipy_direct(tmp_path: Path, method: str) -> None:
    record = _record(tmp_path, noise=30.0, seed=3)
    params = DTIParams(fit_method=method)
    outcome = process_subject(record, tmp_path / "work", params)
    assert outcome.status == "computed", outcome.error
    paths = derivative_paths(tmp_path / "work", "sub-01")
    mask_ref, fa_ref, md_ref = _dipy_direct(record, params)
    mask = nib.load(paths.mask).get_fdata() > 0
    fa = nib.load(paths.fa).get_fdata()
    md = nib.load(paths.md).get_fdata()
    np.testing.assert_array_equal(mask, mask_ref)
    assert mask.sum() > 50
    np.testing.assert_allclose(fa[mask], fa_ref[mask], atol=1e-6, rtol=0)
    np.testing.assert_allclose(md[mask], md_ref[mask], atol=1e-9, rtol=1e-6)
    assert np.all(fa[~mask] == 0)
    np.testing.assert_allclose(nib.load(paths.fa).affine, nib.load(record.dwi).affine)


def _two_fits(bvals: np.ndarray, bvecs: np.ndarray, data: np.ndarray):
    """DIPY's WLS and braincam's normal-equation WLS on the same data, with S0."""
    from dipy.core.gradients import gradient_table
    from dipy.reconst.dti import TensorModel

    gtab = gradient_table(bvals, bvecs=bvecs)
    ref = TensorModel(gtab, fit_method="WLS", return_S0_hat=True).fit(data)
    ours = TensorModel(gtab, fit_method=wls_fit_normal, return_S0_hat=True).fit(data)
    return ref, ours


def test_normal_equation_wls_is_dipys_wls() -> None:
    # Noisy tensors of many shapes and sizes, the dim noisy background and voxels at DIPY's
    # minimum signal: every kind of voxel a DWI holds, over several of DIPY's 10 000-voxel chunks.
    rng = np.random.default_rng(7)
    bvals, bvecs = gradient_scheme(n_b0=3, n_dirs=30, seed=2)
    n = 25_000
    evals = rng.uniform(0.1e-3, 3.0e-3, size=(n, 3))
    rot = np.linalg.qr(rng.normal(size=(n, 3, 3)))[0]
    tensors = np.einsum("nij,nj,nkj->nik", rot, evals, rot)
    s0 = rng.uniform(50.0, 3000.0, size=(n, 1))
    signal = s0 * np.exp(-bvals * np.einsum("gi,nij,gj->ng", bvecs, tensors, bvecs))
    data = np.abs(signal + rng.normal(0.0, 20.0, signal.shape))
    data[:500] = np.abs(rng.normal(0.0, 20.0, (500, len(bvals))))  # background: noise only
    data[500:510] = 0.0  # clipped to DIPY's minimum signal
    ref, ours = _two_fits(bvals, bvecs, data.reshape(250, 100, -1))
    assert np.isfinite(ref.fa).all() and ref.fa.std() > 0.1  # a spread of anisotropies
    np.testing.assert_allclose(ours.fa, ref.fa, atol=1e-8, rtol=0)
    np.testing.assert_allclose(ours.md, ref.md, atol=1e-15, rtol=1e-8)
    np.testing.assert_allclose(ours.evals, ref.evals, atol=1e-15, rtol=1e-7)
    np.testing.assert_allclose(ours.S0_hat, ref.S0_hat, rtol=1e-7)
    aligned = np.abs(np.einsum("...ij,...ij->...j", ours.evecs, ref.evecs))[..., 0]
    distinct = (ref.evals[..., 0] - ref.evals[..., 1]) > 1e-5 * ref.evals[..., 0]
    np.testing.assert_allclose(aligned[distinct], 1.0, atol=1e-6)  # principal directions agree


def test_normal_equation_wls_falls_back_to_dipy_where_it_cannot_be_trusted() -> None:
    data = dwi_data(*gradient_scheme(), shape=(6, 6, 6), noise=10.0, seed=1).astype(np.float64)
    bvals, bvecs = gradient_scheme()
    # Weights that overflow: a b=0 signal near the float limit with vanishing DWIs.
    data[0, 0, 0, bvals == 0] = 1e300
    data[0, 0, 0, bvals > 0] = 1e-300
    ref, ours = _two_fits(bvals, bvecs, data)
    np.testing.assert_array_equal(ours.evals[0, 0, 0], ref.evals[0, 0, 0])
    np.testing.assert_allclose(ours.fa[1:], ref.fa[1:], atol=1e-8, rtol=0)
    # Five directions: every weighted system is singular (rank 6 < 7) — DIPY's pseudo-inverse.
    few = np.r_[0, 0, 1000.0 * np.ones(5)], np.r_[np.zeros((2, 3)), np.eye(3), [[0.6, 0.8, 0]] * 2]
    few_data = data[..., :7]
    ref, ours = _two_fits(
        few[0], few[1] / np.linalg.norm(few[1], axis=1, keepdims=True).clip(1e-9), few_data
    )
    np.testing.assert_array_equal(ours.evals, ref.evals)


def test_fa_and_md_of_a_known_tensor(tmp_path: Path) -> None:
    record = _record(tmp_path, noise=0.0)
    process_subject(record, tmp_path / "work", DTIParams(fit_method="OLS"))
    paths = derivative_paths(tmp_path / "work", "sub-01")
    fa = nib.load(paths.fa).get_fdata()
    md = nib.load(paths.md).get_fdata()
    ev = np.asarray(EVALS)
    fa_true = np.sqrt(1.5 * np.sum((ev - ev.mean()) ** 2) / np.sum(ev**2))
    inner = brain_ball() & (nib.load(paths.mask).get_fdata() > 0)
    assert inner.sum() > 50
    np.testing.assert_allclose(fa[inner], fa_true, atol=1e-4)
    np.testing.assert_allclose(md[inner], ev.mean(), rtol=1e-4)


def test_sidecars_record_method_parameters_hashes_and_versions(tmp_path: Path) -> None:
    record = _record(tmp_path)
    params = DTIParams(fit_method="ols", median_radius=1, numpass=2)
    assert params.fit_method == "OLS"
    process_subject(record, tmp_path / "work", params)
    paths = derivative_paths(tmp_path / "work", "sub-01")
    import json

    side = json.loads(paths.fa_json.read_text())
    assert side["FitMethod"] == "OLS"
    assert side["Parameters"]["median_radius"] == 1 and side["Parameters"]["numpass"] == 2
    expected = hashlib.sha256(record.dwi.read_bytes()).hexdigest()
    assert side["InputHashes"]["dwi"] == f"sha256:{expected}"
    assert side["Versions"]["dipy"] not in ("", "absent")
    assert side["BraincamCacheKey"] == cache_key(input_hashes(record), params)
    assert json.loads(paths.md_json.read_text())["Units"] == "mm^2/s"
    assert nib.load(paths.mask).get_data_dtype() == np.uint8
    assert nib.load(paths.fa).get_data_dtype() == np.float32


def test_cache_skips_unchanged_and_recomputes_on_change(tmp_path: Path) -> None:
    record = _record(tmp_path)
    work = tmp_path / "work"
    params = DTIParams()
    assert process_subject(record, work, params).status == "computed"
    paths = derivative_paths(work, "sub-01")
    mtime = paths.fa.stat().st_mtime_ns
    assert process_subject(record, work, params).status == "skipped"
    assert paths.fa.stat().st_mtime_ns == mtime
    assert process_subject(record, work, params, force=True).status == "computed"
    # A changed parameter or a changed input byte invalidates the cache.
    assert process_subject(record, work, DTIParams(fit_method="OLS")).status == "computed"
    assert process_subject(record, work, DTIParams(fit_method="OLS")).status == "skipped"
    write_dwi(tmp_path / "in", "sub-01_dwi", seed=7)
    assert not is_cached(paths, cache_key(input_hashes(record), DTIParams(fit_method="OLS")))
    assert process_subject(record, work, DTIParams(fit_method="OLS")).status == "computed"
    # A missing output also invalidates it.
    paths.md.unlink()
    assert process_subject(record, work, DTIParams(fit_method="OLS")).status == "computed"


def test_truncated_gzip_fails_at_data_access(tmp_path: Path) -> None:
    root = make_bids(tmp_path / "bids", LABELS)
    dwi = root / "sub-02" / "dwi" / "sub-02_dwi.nii.gz"
    raw = dwi.read_bytes()
    dwi.write_bytes(raw[: len(raw) // 2])
    ingested = ingest_bids(root, label="group")
    assert ingested.failures == []  # the header still reads: only the data reveal it
    outcomes = {
        r.participant_id: process_subject(r, tmp_path / "w", DTIParams()) for r in ingested.subjects
    }
    bad = outcomes["sub-02"]
    assert bad.status == "failed" and bad.step == "validate"
    assert "truncated" in bad.error and "subject=sub-02" in bad.error
    assert bad.file == str(dwi) and "value=" in bad.error
    assert all(o.status == "computed" for p, o in outcomes.items() if p != "sub-02")
    assert not derivative_paths(tmp_path / "w", "sub-02").fa.exists()


def test_nan_or_inf_data_fail_with_count(tmp_path: Path) -> None:
    record = _record(tmp_path)
    img = nib.load(record.dwi)
    data = img.get_fdata().astype(np.float32)
    data[1, 1, 1, 3] = np.nan
    data[2, 2, 2, 0] = np.inf
    nib.save(nib.Nifti1Image(data, img.affine), record.dwi)
    outcome = process_subject(record, tmp_path / "w", DTIParams())
    assert outcome.status == "failed" and outcome.step == "validate"
    assert "NaN/Inf" in outcome.error and "value=2" in outcome.error
    assert f"file={record.dwi}" in outcome.error and "subject=sub-01" in outcome.error


def test_gzip_header_is_readable_after_truncation(tmp_path: Path) -> None:
    # Guards the premise of the truncation test: a cut .gz opens and its header parses.
    record = _record(tmp_path)
    raw = record.dwi.read_bytes()
    record.dwi.write_bytes(raw[: len(raw) // 2])
    with gzip.open(record.dwi) as f:
        assert len(f.read(348)) == 348
    assert nib.load(record.dwi).shape[3] == 14


def test_bad_params_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="fit_method"):
        DTIParams(fit_method="magic")
    with pytest.raises(ConfigError, match="median_radius"):
        DTIParams(median_radius=0)
    assert DTIParams(fit_method="nls").fit_method == "NLLS"
