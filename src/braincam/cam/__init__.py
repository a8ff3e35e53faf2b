"""braincam.cam: the CAM family on 2-D and 3-D CNNs, batched, on the model's device.

``compute_cams(model, inputs, method="gradcam", ...)`` is the entry point; the method classes
(``GradCAM(model, layer)(inputs, targets)`` → :class:`CAMResult`) give raw and upsampled maps.
``register_method`` adds a method (a :class:`CAMMethod` subclass) by name; see docs/cam.md.
"""

from braincam.cam.api import compute_cams, make_method
from braincam.cam.base import HookSession
from braincam.cam.methods import (
    CAM,
    METHODS,
    CAMMethod,
    CAMResult,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
    get_method,
    register_method,
    unregister_method,
)
from braincam.cam.postprocess import normalize_maps, upsample_maps
from braincam.cam.targets import TargetSpec

__all__ = [
    "CAM",
    "METHODS",
    "CAMMethod",
    "CAMResult",
    "EigenCAM",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "HookSession",
    "LayerCAM",
    "ScoreCAM",
    "TargetSpec",
    "XGradCAM",
    "compute_cams",
    "get_method",
    "make_method",
    "normalize_maps",
    "register_method",
    "unregister_method",
    "upsample_maps",
]
