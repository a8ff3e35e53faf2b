"""Ground-truth file names (imaging/groundtruth.py): which masks are lesion masks."""

from __future__ import annotations

from pathlib import Path

from braincam.imaging.groundtruth import anat_groundtruth_paths, is_lesion_mask


def test_lesion_masks_are_recognized_by_their_bids_name() -> None:
    assert is_lesion_mask(anat_groundtruth_paths("/bids", "sub-01")["lesion_mask"])
    assert is_lesion_mask(Path("/m/sub-01_ses-1_desc-lesion_mask.nii"))
    assert is_lesion_mask("sub-02_desc-lesion_mask.nii.gz")
    for other in (
        "sub-01_desc-effect_mask.nii.gz",  # the dMRI effect region
        "sub-01_mask.nii.gz",
        "sub-01_desc-lesion_mask.json",
        "sub-01_desc-lesionx_mask.nii.gz",
        "sub-01_desc-nolesion_mask.nii.gz",
    ):
        assert not is_lesion_mask(other), other


def test_sibling_masks_of_the_other_effects() -> None:
    from braincam.imaging.groundtruth import EFFECT_MASK_DESCS, sibling_mask

    paths = anat_groundtruth_paths("/bids", "sub-01")
    assert {d: sibling_mask(paths["lesion_mask"], d) for d in EFFECT_MASK_DESCS} == {
        "atrophy": paths["atrophy_mask"],
        "ventricles": paths["ventricle_mask"],
    }
    assert sibling_mask("/m/sub-1_ses-a_desc-effect_mask.nii", "atrophy") == Path(
        "/m/sub-1_ses-a_desc-atrophy_mask.nii"
    )
    assert sibling_mask("/m/sub-1_mask.nii.gz", "atrophy") is None
    assert sibling_mask("/m/sub-1_desc-lesion_mask.json", "atrophy") is None
