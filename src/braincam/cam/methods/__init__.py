"""The CAM family, one module per kind of method, and the registry.

``core`` (the :class:`CAMMethod` base, :class:`CAMResult`), ``gradient`` (Grad-CAM and the
methods built from A and ∂score/∂A), ``classifier`` (CAM), ``activation`` (EigenCAM),
``perturbation`` (Score-CAM, SS-CAM, IS-CAM, Ablation-CAM), ``fullgrad`` (FullGrad),
``reference`` (Integrated Gradients from a reference input), ``registry`` (names → classes).
"""

from braincam.cam.methods.activation import EigenCAM
from braincam.cam.methods.classifier import CAM, CAMHeadWarning
from braincam.cam.methods.core import CAMMethod, CAMResult, principal_map
from braincam.cam.methods.fullgrad import FullGrad
from braincam.cam.methods.gradient import (
    EigenGradCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    SmoothGradCAMPlusPlus,
    XGradCAM,
)
from braincam.cam.methods.perturbation import ISCAM, SSCAM, AblationCAM, ScoreCAM
from braincam.cam.methods.reference import IntegratedGradients
from braincam.cam.methods.registry import (
    METHODS,
    get_method,
    register_method,
    unregister_method,
)

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
    "FullGrad",
    "GradCAM",
    "GradCAMPlusPlus",
    "HiResCAM",
    "IntegratedGradients",
    "LayerCAM",
    "ScoreCAM",
    "SmoothGradCAMPlusPlus",
    "XGradCAM",
    "get_method",
    "principal_map",
    "register_method",
    "unregister_method",
]
