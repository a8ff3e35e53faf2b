"""``compute_cams``: the one-call entry point over the method classes."""

from __future__ import annotations

import inspect

from torch import Tensor, nn

from braincam.cam.methods import CAMMethod, get_method
from braincam.cam.targets import TargetSpec
from braincam.errors import ModelError

__all__ = ["compute_cams", "make_method"]


def make_method(
    model: nn.Module,
    method: str | type[CAMMethod] = "gradcam",
    layer: str | nn.Module | None = None,
    **method_kwargs: object,
) -> CAMMethod:
    """Build a method object (reusable across batches); options are checked by name."""
    cls = method if isinstance(method, type) and issubclass(method, CAMMethod) else None
    if cls is None:
        cls = get_method(method)  # type: ignore[arg-type]
    accepted = [
        p.name
        for p in inspect.signature(cls.__init__).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    unknown = sorted(set(method_kwargs) - set(accepted))
    if unknown:
        raise ModelError(
            f"method {cls.name!r} does not take {', '.join(unknown)}; "
            f"its options: {', '.join(accepted) or 'none'}"
        )
    return cls(model, layer, **method_kwargs)  # type: ignore[arg-type]


def compute_cams(
    model: nn.Module,
    inputs: Tensor,
    method: str | type[CAMMethod] = "gradcam",
    layer: str | nn.Module | None = None,
    targets: TargetSpec = None,
    upsample: bool = True,
    normalize: bool = True,
    relu: bool = True,
    **method_kwargs: object,
) -> Tensor:
    """Class activation maps (N, *spatial) for a batch, on the model's device.

    ``method``: one of ``braincam.cam.METHODS`` (built in: ``"cam"``, ``"gradcam"``,
    ``"gradcampp"``, ``"xgradcam"``, ``"layercam"``, ``"hirescam"``, ``"scorecam"``,
    ``"eigencam"``; more with :func:`~braincam.cam.register_method`), or a method class.
    ``layer``: name or module, default ``model.cam_layer``. ``targets``: None (predicted class),
    an int, one int per sample, or a callable outputs → per-sample scores. ``upsample=False``
    returns feature-resolution maps. ``method_kwargs``: ``classifier=`` (CAM),
    ``batch_size=`` (Score-CAM). For both raw and upsampled maps, call the method object
    (:func:`make_method`) and read :class:`~braincam.cam.CAMResult`.
    """
    cam = make_method(model, method, layer, **method_kwargs)
    return cam(inputs, targets, upsample=upsample, normalize=normalize, relu=relu).maps
