"""CAM (Zhou et al. 2016): the class's linear-classifier weights on the layer's channels."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor, nn

from braincam.cam.base import HookSession, resolve_module
from braincam.cam.methods.core import CAMMethod, LayerSpec, _weighted
from braincam.cam.targets import ResolvedTargets
from braincam.errors import InputError, ModelError

__all__ = ["CAM", "CAMHeadWarning"]


class CAMHeadWarning(UserWarning):
    """CAM was computed on a head where it is not Grad-CAM: something other than global average
    pooling (a LayerNorm, a ReLU, max pooling) sits between the layer and the classifier."""


class CAM(CAMMethod):
    """CAM (Zhou et al. 2016): Σ_k W[c, k] A_k with the linear classifier's weights W.

    Defined for layer → global average pooling → one ``nn.Linear``. The classifier is
    ``classifier=`` (name or module), else ``model.classifier_layer``, else the only ``nn.Linear``
    that runs after the layer (several, or none, is an error: CAM is not defined for an FC head).
    When the head is not exactly that — the classifier's logit differs from W[c]·mean(A) + b[c],
    e.g. convnext's pooling → LayerNorm → Linear or densenet's functional ReLU before pooling — a
    :class:`CAMHeadWarning` says so (the map is then not the class evidence; Grad-CAM is).
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        layer: LayerSpec = None,
        *,
        classifier: str | nn.Module | None = None,
        **options: object,
    ) -> None:
        super().__init__(model, layer, **options)  # type: ignore[arg-type]
        self.classifier_name: str | None = None
        self.classifier: nn.Linear | None = None
        if classifier is None and hasattr(model, "classifier_layer"):
            classifier = model.classifier_layer
            if classifier is None:
                raise ModelError(
                    f"CAM is not defined for {type(model).__name__}: model.classifier_layer is "
                    "None (a fully connected head, not global pooling + linear); use a gradient "
                    "method such as 'gradcam'"
                )
        if classifier is not None:
            name, module = resolve_module(model, classifier, "classifier")
            self._set_classifier(name, module)

    def _set_classifier(self, name: str, module: nn.Module) -> None:
        if not isinstance(module, nn.Linear):
            raise ModelError(f"classifier {name!r} is {type(module).__name__}, not nn.Linear")
        self.classifier_name, self.classifier = name, module

    def _session(self, **options: bool) -> HookSession:
        return super()._session(trace_linear=self.classifier is None, **options)

    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        act = session.activation
        if act is None or targets is None:  # pragma: no cover - HookSession.forward guarantees
            raise ModelError("no activation captured")
        if targets.classes is None:
            raise InputError("CAM needs class-index targets, not a callable")
        if self.classifier is None:
            after = session.linear_after
            if len(after) != 1:
                found = ", ".join(after) if after else "none"
                raise ModelError(
                    f"cannot choose CAM's classifier after layer {session.layer_name!r}: CAM "
                    f"needs exactly one nn.Linear after global pooling, found {found}; pass "
                    "classifier= or use a gradient method such as 'gradcam'"
                )
            self._set_classifier(after[0], self.model.get_submodule(after[0]))
        weight = self.classifier.weight.detach()  # type: ignore[union-attr]
        if weight.shape[1] != act.shape[1]:
            raise ModelError(
                f"classifier {self.classifier_name!r} takes {weight.shape[1]} features but layer "
                f"{session.layer_name!r} has {act.shape[1]} channels; CAM needs layer → global "
                "pooling → classifier"
            )
        if int(targets.classes.max()) >= weight.shape[0]:
            raise InputError(
                f"target class out of range for classifier {self.classifier_name!r} with "
                f"{weight.shape[0]} outputs",
                value=targets.classes.tolist(),
            )
        # Each sample's own features with its own class's weights (the dMRI study's code used
        # the first image's features for every image).
        w = weight[targets.classes].to(act.dtype)
        self._check_head(session.layer_name, act, w, outputs, targets.classes)
        return self._reduce(_weighted(w, act))

    def _check_head(
        self, layer: str, act: Tensor, w: Tensor, outputs: Tensor, classes: Tensor
    ) -> None:
        """Warn unless logit_c = W[c]·mean(A) + b[c] (layer → GAP → classifier, nothing else)."""
        bias = self.classifier.bias  # type: ignore[union-attr]
        b = 0.0 if bias is None else bias.detach()[classes].to(act.dtype)
        implied = (w * act.flatten(2).mean(dim=-1)).sum(dim=1) + b
        logit = outputs.detach().gather(1, classes.unsqueeze(1)).squeeze(1).to(act.dtype)
        scale = 1 + logit.abs() + (w.abs() * act.flatten(2).abs().mean(dim=-1)).sum(dim=1)
        tol = 1e3 * torch.finfo(act.dtype).eps * scale
        gap = (implied - logit).abs()
        if bool((gap > tol).any()):
            # the sample furthest past its own tolerance (the largest gap may be within its own)
            worst = int((gap / tol).argmax())
            warnings.warn(
                f"CAM's assumption (layer {layer!r} → global average pooling → classifier "
                f"{self.classifier_name!r}) does not hold: for sample {worst} the logit is "
                f"{float(logit[worst]):.4g} but W·mean(A) + b is {float(implied[worst]):.4g}; "
                "something else (a LayerNorm, a ReLU, max pooling) sits between them, so this "
                "map is not the class evidence — use a gradient method such as 'gradcam'",
                CAMHeadWarning,
                stacklevel=5,
            )
