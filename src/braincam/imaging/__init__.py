"""Imaging helpers shared by preprocessing, representations, synthesis and evaluation.

One home each: NIfTI I/O and header checks (:mod:`.nifti`), NIfTI ↔ SimpleITK (:mod:`.sitk`),
registration (:mod:`.registration`), resampling (:mod:`.resample`), BIDS-derivatives naming
(:mod:`.derivatives`), ground-truth naming (:mod:`.groundtruth`), the bundled MNI152 template
(:mod:`.templates`), slice orientation (:mod:`.orientation`), masks (:mod:`.masks`), file
hashing (:mod:`.hashing`) and the Gaussian blur on tensors (:mod:`.filters`). Imports only
``braincam.errors``/``braincam.io`` below it.
"""
