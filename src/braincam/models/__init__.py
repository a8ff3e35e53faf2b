"""braincam.models: the model zoo by name (GAP/GMP/FC heads), local ImageNet weights.

>>> model = build_model("resnet18-gap", in_channels=1, num_classes=2)
>>> model.get_submodule(model.cam_layer)  # the CAM feature map; model.classifier_layer: weights
"""

from braincam.models.heads import CamHead, CamNet
from braincam.models.registry import (
    ModelSpec,
    build_model,
    get_spec,
    list_models,
    register_model,
    unregister_model,
)

__all__ = [
    "CamHead",
    "CamNet",
    "ModelSpec",
    "build_model",
    "get_spec",
    "list_models",
    "register_model",
    "unregister_model",
]
