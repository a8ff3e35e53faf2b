"""EigenCAM (Muhammad & Yeasin 2020): class-agnostic, from the activation alone."""

from __future__ import annotations

from torch import Tensor

from braincam.cam.base import HookSession
from braincam.cam.methods.core import CAMMethod, principal_map
from braincam.cam.targets import ResolvedTargets
from braincam.errors import ModelError

__all__ = ["EigenCAM"]


class EigenCAM(CAMMethod):
    """EigenCAM (Muhammad & Yeasin 2020): projection on the first principal component.

    Per sample, the activation is a (positions × channels) matrix; it is centred per channel and
    projected on its first right singular vector. Class-agnostic (targets are ignored). The SVD
    sign is arbitrary; we orient it so the map correlates positively with the channel-mean
    activation (strongly activated positions come out high).
    """

    name = "eigencam"
    uses_targets = False
    sums_channels = False

    def _compute(
        self,
        session: HookSession,
        x: Tensor,
        outputs: Tensor,
        targets: ResolvedTargets | None,
    ) -> Tensor:
        act = session.activation
        if act is None:  # pragma: no cover - HookSession.forward guarantees
            raise ModelError("no activation captured")
        return principal_map(act)
