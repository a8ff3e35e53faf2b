"""braincam.cam: the CAM family on 2-D and 3-D networks, batched, on the model's device.

``compute_cams(model, inputs, method="gradcam", ...)`` is the entry point; the method classes
(``GradCAM(model, layer)(inputs, targets)`` → :class:`CAMResult`) give raw and upsampled maps.
``layer=`` may list several layers (fused, :mod:`braincam.cam.fusion`); ``layout=`` /
``reshape=`` read channels-last and token layers (:mod:`braincam.cam.layout`).
``register_method`` adds a method (a :class:`CAMMethod` subclass) by name; see docs/cam.md.
"""

from braincam.cam.api import compute_cams, make_method
from braincam.cam.base import HookSession
from braincam.cam.fusion import fuse_maps
from braincam.cam.layout import TokenGrid
from braincam.cam.methods import (
    CAM,
    ISCAM,
    METHODS,
    SSCAM,
    AblationCAM,
    CAMHeadWarning,
    CAMMethod,
    CAMResult,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
    get_method,
    register_method,
    unregister_method,
)
from braincam.cam.postprocess import normalize_maps, upsample_maps
from braincam.cam.smoothing import Flip, Shift
from braincam.cam.targets import TargetSpec

__all__ = [
    "CAM",
    "ISCAM",
    "METHODS",
    "SSCAM",
    "AblationCAM",
    "CAMHeadWarning",
    "CAMMethod",
    "CAMResult",
    "EigenCAM",
    "EigenGradCAM",
    "Flip",
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "HookSession",
    "LayerCAM",
    "ScoreCAM",
    "Shift",
    "SmoothGradCAMPlusPlus",
    "TargetSpec",
    "TokenGrid",
    "XGradCAM",
    "compute_cams",
    "fuse_maps",
    "get_method",
    "make_method",
    "normalize_maps",
    "register_method",
    "unregister_method",
    "upsample_maps",
]
