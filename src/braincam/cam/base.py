"""The one place that touches the user's model: layer lookup, hooks and state restoration.

:class:`HookSession` is a context manager. On entry it puts the model in eval mode, freezes the
parameters (when gradients are needed) and registers one forward hook on the target layer; on exit
— also when an exception is raised — it removes the hook and restores every module's
``training`` flag and every parameter's ``requires_grad`` flag exactly as they were.

Why the hook detaches: gradient methods need ∂score/∂A for the target activation A only. The hook
replaces A by a fresh leaf tensor that requires grad and hands a *clone* of it to the rest of the
network. So no graph is built before the layer, no parameter gradient is ever computed
(``torch.autograd.grad`` asks for the leaf only), and in-place operations after the layer
(``ReLU(inplace=True)``, ``out += identity``) modify the clone, never the captured activation —
the model's ``inplace`` flags need no change.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

import torch
from torch import Tensor, nn

from braincam.errors import InputError, ModelError

__all__ = [
    "HookSession",
    "check_inputs",
    "model_device",
    "resolve_layer",
    "resolve_module",
    "spatial_layers",
]


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """Device of the model's first parameter or buffer; ``fallback`` for a stateless model."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return fallback


def spatial_layers(model: nn.Module) -> list[str]:
    """Names of the convolution layers, in registration order (used in error messages)."""
    conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [name for name, module in model.named_modules() if isinstance(module, conv)]


def resolve_module(model: nn.Module, spec: str | nn.Module, what: str) -> tuple[str, nn.Module]:
    """Find ``spec`` (a dotted name or a module object) inside ``model``; return (name, module)."""
    if isinstance(spec, str):
        try:
            module = model.get_submodule(spec)
        except AttributeError:
            hint = ", ".join(spatial_layers(model)[-5:]) or "none"
            raise ModelError(
                f"{what} {spec!r} is not in the model ({type(model).__name__}); "
                f"its last conv layers are: {hint}"
            ) from None
        return spec, module
    if isinstance(spec, nn.Module):
        for name, module in model.named_modules():
            if module is spec:
                return name, module
        raise ModelError(f"{what} {type(spec).__name__} is not a submodule of the model")
    raise ModelError(f"{what} must be a layer name or an nn.Module, got {type(spec).__name__}")


def resolve_layer(model: nn.Module, layer: str | nn.Module | None) -> tuple[str, nn.Module]:
    """Target layer: explicit ``layer`` → the model's ``cam_layer`` attribute → a clear error.

    There is deliberately no "last conv layer" guess: in a ResNet the last registered conv
    precedes the batch norm and the residual sum, so the guess would silently be the wrong layer.
    """
    if layer is None:
        layer = getattr(model, "cam_layer", None)
        if layer is None:
            hint = ", ".join(spatial_layers(model)[-5:]) or "none"
            raise ModelError(
                "no target layer: pass layer= (a name or module) or build the model with "
                "braincam.models.build_model (which sets model.cam_layer); "
                f"last conv layers: {hint}"
            )
    return resolve_module(model, layer, "layer")


class HookSession:
    """Context manager that hooks one layer of ``model`` and restores the model on exit.

    Use :meth:`forward` inside the ``with`` block; after it, :attr:`activation` holds the layer's
    output of that forward (a leaf requiring grad when ``need_grad``) and :attr:`linear_after` the
    names of the ``nn.Linear`` modules that ran after the layer (when ``trace_linear``).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module,
        layer_name: str,
        *,
        need_grad: bool,
        trace_linear: bool = False,
    ) -> None:
        self.model = model
        self.layer = layer
        self.layer_name = layer_name
        self.need_grad = need_grad
        self.trace_linear = trace_linear
        self.activation: Tensor | None = None
        self.calls = 0
        self.linear_after: list[str] = []
        self.capture = True
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._training: list[tuple[nn.Module, bool]] = []
        self._requires_grad: list[tuple[nn.Parameter, bool]] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> HookSession:
        try:
            self._training = [(m, m.training) for m in self.model.modules()]
            self._requires_grad = [(p, p.requires_grad) for p in self.model.parameters()]
            # CAMs are defined for the deployed network: dropout off, batch norm on running stats.
            self.model.eval()
            if self.need_grad:
                # No parameter needs a gradient; without this autograd would still record (and
                # save tensors for) every parameter after the hooked layer.
                for param, _ in self._requires_grad:
                    param.requires_grad_(False)
            self._handles.append(self.layer.register_forward_hook(self._layer_hook))
            if self.trace_linear:
                for name, module in self.model.named_modules():
                    if isinstance(module, nn.Linear):
                        self._handles.append(module.register_forward_hook(self._linear_hook(name)))
        except BaseException:
            self._restore()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._restore()

    def _restore(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, training in self._training:
            module.training = training
        for param, flag in self._requires_grad:
            param.requires_grad_(flag)
        self.activation = None

    # -- hooks ---------------------------------------------------------------------------------
    def _layer_hook(self, module: nn.Module, args: object, output: object) -> Tensor | None:
        if not self.capture:
            return None
        if not isinstance(output, Tensor):
            raise ModelError(
                f"layer {self.layer_name!r} returns {type(output).__name__}, not a tensor; "
                "choose a layer with a single spatial output"
            )
        self.calls += 1
        if self.need_grad:
            leaf = output.detach().requires_grad_(True)
            self.activation = leaf
            return leaf.clone()
        self.activation = output.detach()
        # Downstream in-place ops must not alter what we captured: they get a copy.
        return output.clone()

    def _linear_hook(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            if self.capture and self.calls > 0 and name not in self.linear_after:
                self.linear_after.append(name)

        return hook

    # -- running -------------------------------------------------------------------------------
    def forward(self, inputs: Tensor) -> Tensor:
        """Run the model once, capturing the layer; returns the model output."""
        self.activation = None
        self.calls = 0
        self.linear_after = []
        self.capture = True
        with torch.set_grad_enabled(self.need_grad):
            output = self.model(inputs)
        if self.calls == 0:
            raise ModelError(f"layer {self.layer_name!r} did not run during the forward pass")
        if self.calls > 1:
            raise ModelError(
                f"layer {self.layer_name!r} ran {self.calls} times in one forward pass (a shared "
                "module); choose a layer that runs once"
            )
        act = self.activation
        if act is None or act.ndim != inputs.ndim:
            shape = None if act is None else tuple(act.shape)
            raise ModelError(
                f"layer {self.layer_name!r} is not spatial: its output has shape {shape} but the "
                f"input has {inputs.ndim - 2} spatial dimensions; choose a convolutional layer"
            )
        if act.shape[2:].numel() == 1 and inputs.shape[2:].numel() > 1:
            raise ModelError(
                f"layer {self.layer_name!r} has a single spatial position (shape "
                f"{tuple(act.shape)}), e.g. after global pooling; choose a layer before it"
            )
        if not isinstance(output, Tensor):
            raise ModelError(f"the model returns {type(output).__name__}, expected a logits tensor")
        return output

    @torch.no_grad()
    def forward_plain(self, inputs: Tensor) -> Tensor:
        """Run the model without capturing (Score-CAM's masked inputs)."""
        self.capture = False
        try:
            output = self.model(inputs)
        finally:
            self.capture = True
        if not isinstance(output, Tensor):
            raise ModelError(f"the model returns {type(output).__name__}, expected a logits tensor")
        return output


def check_inputs(inputs: object) -> Tensor:
    """Validate a batch: a floating tensor of rank 4 (N,C,H,W) or 5 (N,C,D,H,W), non-empty."""
    if not isinstance(inputs, Tensor):
        raise InputError("inputs must be a torch.Tensor", value=type(inputs).__name__)
    if inputs.ndim not in (4, 5):
        raise InputError(
            "inputs must have shape (N, C, H, W) or (N, C, D, H, W)", value=tuple(inputs.shape)
        )
    if inputs.shape[0] == 0 or inputs.numel() == 0:
        raise InputError("inputs are empty", value=tuple(inputs.shape))
    if not inputs.is_floating_point():
        raise InputError("inputs must be a floating-point tensor", value=str(inputs.dtype))
    return inputs
