"""``compute_cams``: the one-call entry point over the method classes."""

from __future__ import annotations

import inspect

from torch import Tensor, nn

from braincam.cam.methods import CAMMethod, get_method
from braincam.cam.methods.core import LayerSpec
from braincam.cam.targets import TargetSpec
from braincam.errors import ModelError

__all__ = ["compute_cams", "make_method"]


def make_method(
    model: nn.Module,
    method: str | type[CAMMethod] = "gradcam",
    layer: LayerSpec = None,
    **method_kwargs: object,
) -> CAMMethod:
    """Build a method object (reusable across batches); options are checked by name.

    ``layer``: a name, a module or a list of them (several layers, fused). The options are the
    method's own (e.g. ``batch_size=``) and those every method takes: ``layout=``, ``reshape=``,
    ``fusion=``, ``aug_smooth=``, ``eigen_smooth=`` (see :class:`~braincam.cam.CAMMethod`).
    """
    cls = method if isinstance(method, type) and issubclass(method, CAMMethod) else None
    if cls is None:
        cls = get_method(method)  # type: ignore[arg-type]
    accepted = sorted(
        {
            p.name
            for klass in cls.__mro__
            if issubclass(klass, CAMMethod) and "__init__" in vars(klass)
            for p in inspect.signature(klass.__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        }
    )
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
    layer: LayerSpec = None,
    targets: TargetSpec = None,
    upsample: bool = True,
    normalize: bool = True,
    relu: bool = True,
    **method_kwargs: object,
) -> Tensor:
    """Class activation maps (N, *spatial) for a batch, on the model's device.

    ``method``: one of ``braincam.cam.METHODS`` (built in: ``"cam"``, ``"gradcam"``,
    ``"gradcampp"``, ``"xgradcam"``, ``"layercam"``, ``"hirescam"``, ``"scorecam"``,
    ``"eigencam"``, ``"ablationcam"``, ``"eigengradcam"``, ``"fullgrad"``,
    ``"smoothgradcampp"``, ``"sscam"``, ``"iscam"``; more with
    :func:`~braincam.cam.register_method`), or a method class.
    ``layer``: name or module, or a list of them — each layer's map, upsampled to the input, is
    fused by LayerCAM's rule (:mod:`braincam.cam.fusion`); default ``model.cam_layer``.
    ``targets``: None (predicted class), an int, one int per sample, or a callable outputs →
    per-sample scores. ``upsample=False`` returns feature-resolution maps. ``method_kwargs``: the
    method's options (``classifier=`` for CAM, ``batch_size=`` for the perturbation methods, …)
    and the shared ones (``layout=``, ``reshape=``, ``fusion=``, ``aug_smooth=``,
    ``eigen_smooth=``). For both raw and upsampled maps, call the method object
    (:func:`make_method`) and read :class:`~braincam.cam.CAMResult`.
    """
    cam = make_method(model, method, layer, **method_kwargs)
    return cam(inputs, targets, upsample=upsample, normalize=normalize, relu=relu).maps
