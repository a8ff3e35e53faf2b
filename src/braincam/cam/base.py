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

from collections.abc import Callable, Sequence
from types import TracebackType

import torch
from torch import Tensor, nn

from braincam.cam.layout import LayerLayout, resolve_layout
from braincam.errors import InputError, ModelError

__all__ = [
    "HookSession",
    "check_inputs",
    "model_device",
    "resolve_layer",
    "resolve_layers",
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


def resolve_layers(
    model: nn.Module, layer: str | nn.Module | Sequence[str | nn.Module] | None
) -> list[tuple[str, nn.Module]]:
    """One layer (see :func:`resolve_layer`) or a non-empty list of distinct layers."""
    if isinstance(layer, (list, tuple)):
        if not layer:
            raise ModelError("layer= is an empty list; give at least one layer")
        found = [resolve_module(model, spec, "layer") for spec in layer]
        names = [name for name, _ in found]
        if len(set(names)) != len(names):
            raise ModelError(f"layer= lists a layer twice: {names}")
        return found
    return [resolve_layer(model, layer)]


class HookSession:
    """Context manager that hooks one or several layers of ``model`` and restores it on exit.

    Use :meth:`forward` inside the ``with`` block. After it, :attr:`activations` holds each
    layer's output of that forward, channels-first ``(N, K, *grid)`` (converted by the layer's
    layout, see :mod:`braincam.cam.layout`); :attr:`activation` is the one of the selected layer
    (:meth:`select`, the first by default); :meth:`gradients` gives ∂score/∂A for every layer at
    once; :attr:`linear_after` names the ``nn.Linear`` modules that ran after the first hooked
    layer (when ``trace_linear``).

    ``layer`` / ``layer_name``: one module and its name, or sequences of them. ``layout`` and
    ``reshape`` declare how the layers' outputs are laid out (default: detected).
    """

    def __init__(
        self,
        model: nn.Module,
        layer: nn.Module | Sequence[nn.Module],
        layer_name: str | Sequence[str],
        *,
        need_grad: bool,
        trace_linear: bool = False,
        layout: str = "auto",
        reshape: Callable[[Tensor], Tensor] | None = None,
        input_grad: bool = False,
    ) -> None:
        self.model = model
        self.layers = [layer] if isinstance(layer, nn.Module) else list(layer)
        self.layer_names = [layer_name] if isinstance(layer_name, str) else list(layer_name)
        # no layer at all: only the mode and requires_grad bookkeeping (Integrated Gradients)
        if len(self.layers) != len(self.layer_names):
            raise ModelError("HookSession needs one name per layer")
        self.need_grad = need_grad
        self.trace_linear = trace_linear
        self.layout = layout
        self.reshape = reshape
        self.input_grad = input_grad
        self.layouts: list[LayerLayout] = []
        self.captured: list[Tensor | None] = []
        self.activations: list[Tensor] = []
        self.index = 0
        self.calls: list[int] = []
        self.linear_after: list[str] = []
        self.capture = True
        self.inputs: Tensor | None = None
        self._grads: list[Tensor] | None = None
        self._replace: dict[int, Callable[[Tensor], Tensor]] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._training: list[tuple[nn.Module, bool]] = []
        self._requires_grad: list[tuple[nn.Parameter, bool]] = []

    @property
    def layer(self) -> nn.Module:
        """The selected layer."""
        return self.layers[self.index]

    @property
    def layer_name(self) -> str:
        """The selected layer's name."""
        return self.layer_names[self.index]

    @property
    def activation(self) -> Tensor | None:
        """The selected layer's activation, channels-first (N, K, *grid)."""
        return self.activations[self.index] if self.activations else None

    def select(self, index: int) -> None:
        """Make layer ``index`` the one :attr:`activation` and :attr:`layer_name` refer to."""
        self.index = index

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
            for i, layer in enumerate(self.layers):
                self._handles.append(layer.register_forward_hook(self._layer_hook(i)))
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
        self.captured = []
        self.activations = []
        self._grads = None
        self.inputs = None

    # -- hooks ---------------------------------------------------------------------------------
    def _layer_hook(self, i: int) -> Callable[[nn.Module, object, object], Tensor | None]:
        def hook(module: nn.Module, args: object, output: object) -> Tensor | None:
            if i in self._replace:
                if not isinstance(output, Tensor):  # pragma: no cover - checked by forward
                    raise ModelError(f"layer {self.layer_names[i]!r} returns no tensor")
                return self._replace[i](output)
            if not self.capture:
                return None
            if not isinstance(output, Tensor):
                raise ModelError(
                    f"layer {self.layer_names[i]!r} returns {type(output).__name__}, not a "
                    "tensor; choose a layer with a single spatial output"
                )
            self.calls[i] += 1
            if self.need_grad:
                if output.requires_grad:
                    # downstream of another hooked layer (or of the input): keep the graph so one
                    # backward pass reaches every hooked layer
                    self.captured[i] = output
                    return output.clone()
                leaf = output.detach().requires_grad_(True)
                self.captured[i] = leaf
                return leaf.clone()
            self.captured[i] = output.detach()
            # Downstream in-place ops must not alter what we captured: they get a copy.
            return output.clone()

        return hook

    def _linear_hook(self, name: str) -> Callable[[nn.Module, object, object], None]:
        def hook(module: nn.Module, args: object, output: object) -> None:
            if self.capture and self.calls and self.calls[0] > 0 and name not in self.linear_after:
                self.linear_after.append(name)

        return hook

    # -- running -------------------------------------------------------------------------------
    def forward(self, inputs: Tensor) -> Tensor:
        """Run the model once, capturing the layers; returns the model output."""
        n = len(self.layers)
        self.captured = [None] * n
        self.activations = []
        self.calls = [0] * n
        self.linear_after = []
        self.capture = True
        self._grads = None
        self.index = 0
        if self.input_grad:
            inputs = inputs.detach().requires_grad_(True)
        self.inputs = inputs
        with torch.set_grad_enabled(self.need_grad):
            output = self.model(inputs)
        spatial = tuple(inputs.shape[2:])
        for i, name in enumerate(self.layer_names):
            if self.calls[i] == 0:
                raise ModelError(f"layer {name!r} did not run during the forward pass")
            if self.calls[i] > 1:
                raise ModelError(
                    f"layer {name!r} ran {self.calls[i]} times in one forward pass (a shared "
                    "module); choose a layer that runs once"
                )
        self.layouts = []
        for i, name in enumerate(self.layer_names):
            raw = self.captured[i]
            if raw is None:  # pragma: no cover - calls[i] == 1 sets it
                raise ModelError(f"layer {name!r} captured nothing")
            lay = resolve_layout(raw.shape, spatial, self.layout, self.reshape, name)
            act = lay.to_grid(raw.detach())
            if act.shape[2:].numel() == 1 and inputs.shape[2:].numel() > 1:
                raise ModelError(
                    f"layer {name!r} has a single spatial position (shape "
                    f"{tuple(raw.shape)}), e.g. after global pooling; choose a layer before it"
                )
            self.layouts.append(lay)
            self.activations.append(act)
        if not isinstance(output, Tensor):
            raise ModelError(f"the model returns {type(output).__name__}, expected a logits tensor")
        return output

    def gradients(self, score: Tensor) -> list[Tensor]:
        """∂score/∂A for every hooked layer (channels-first), one backward pass, cached until the
        next :meth:`forward`. ``score`` must be computed from this forward's output."""
        if self._grads is not None:
            return self._grads
        if not score.requires_grad:
            raise ModelError(
                "the target score does not require grad, so no gradient reaches the layer: a "
                "callable target must not detach its result (.detach(), .item(), numpy, "
                "torch.no_grad()); return e.g. outputs[:, 0]"
            )
        raws = [r for r in self.captured if r is not None]
        grads = torch.autograd.grad(score, raws, allow_unused=True)
        out = []
        for name, lay, grad in zip(self.layer_names, self.layouts, grads, strict=True):
            if grad is None:
                raise ModelError(f"the model output does not depend on layer {name!r}")
            out.append(lay.to_grid(grad))
        self._grads = out
        return out

    def input_gradient(self, score: Tensor) -> tuple[Tensor, list[Tensor]]:
        """(∂score/∂x, [∂score/∂A per layer]) in one backward pass (needs ``input_grad``)."""
        if self.inputs is None or not self.inputs.requires_grad:  # pragma: no cover
            raise ModelError("input gradients need HookSession(..., input_grad=True)")
        if not score.requires_grad:
            self.gradients(score)  # raises the detached-target error
        raws = [r for r in self.captured if r is not None]
        grads = torch.autograd.grad(score, [self.inputs, *raws], allow_unused=True)
        if grads[0] is None:
            raise ModelError("the model output does not depend on its input")
        layer_grads = [
            torch.zeros_like(act) if g is None else lay.to_grid(g)
            for act, lay, g in zip(self.activations, self.layouts, grads[1:], strict=True)
        ]
        return grads[0], layer_grads

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

    @torch.no_grad()
    def forward_from(
        self, index: int, value: Tensor, inputs: Tensor, tail: nn.Module | None
    ) -> Tensor:
        """The model's output when layer ``index`` outputs ``value`` for ``inputs``, without
        capturing: ``tail(value)`` when the model has a tail after that layer
        (:func:`braincam.cam.tail.model_tail`), else the whole model with the output swapped."""
        if tail is None:
            return self.forward_replaced(inputs, index, lambda output: value.to(output.dtype))
        self.capture = False  # hooked layers inside the tail must not overwrite the captures
        try:
            output = tail(value)
        finally:
            self.capture = True
        if not isinstance(output, Tensor):
            raise ModelError(f"the model returns {type(output).__name__}, expected a logits tensor")
        return output

    @torch.no_grad()
    def forward_replaced(
        self, inputs: Tensor, index: int, replace: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """Run the model with layer ``index``'s raw output replaced by ``replace(output)``
        (AblationCAM), without capturing."""
        self._replace = {index: replace}
        try:
            return self.forward_plain(inputs)
        finally:
            self._replace = {}


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
