"""Agreement with the reference implementations (test-only dependencies).

pytorch-grad-cam resizes with cv2 and min-max scales with a 1e-7 epsilon, twice. To compare
without resampling differences, the reference model keeps the input resolution up to the target
layer (stride 1, padding 1): both libraries then return maps at feature resolution, and we apply
the same min-max normalization to both. Its epsilons (1e-6 in Grad-CAM++'s α denominator, 1e-7 in
XGrad-CAM's) are made negligible by a large-gain head (|g| ≈ 10), so the remaining
differences are float32 rounding.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from braincam.cam import compute_cams, make_method, normalize_maps
from builders.cam_nets import same_res_net
from builders.reference import require

pgc = require("pytorch_grad_cam")
monai_cam = require("monai.visualize.class_activation_maps")

from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

TOL = 1e-5


def images(n: int = 3, size: int = 10, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


REFERENCE = {
    "gradcam": "GradCAM",
    "gradcampp": "GradCAMPlusPlus",
    "xgradcam": "XGradCAM",
    "layercam": "LayerCAM",
    "hirescam": "HiResCAM",
}


def theirs(method_cls: str, model: nn.Module, x: torch.Tensor, targets: list[int]) -> torch.Tensor:
    ref_model = copy.deepcopy(model)  # pytorch-grad-cam leaves the model in eval mode
    with getattr(pgc, method_cls)(model=ref_model, target_layers=[ref_model[3]]) as cam:
        out = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
    return torch.from_numpy(out)


@pytest.mark.parametrize("method", list(REFERENCE))
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_pytorch_grad_cam(method: str, seed: int) -> None:
    model, x = same_res_net(seed), images(3, seed=seed + 10)
    targets = [0, 2, 1]
    ours = compute_cams(model, x, method, layer="3", targets=targets)
    ref = normalize_maps(theirs(REFERENCE[method], model, x, targets))
    assert ours.shape == ref.shape == (3, 10, 10)
    assert (ours > 0.05).any()  # not a degenerate all-zero comparison
    assert float((ours - ref).abs().max()) <= TOL


def test_gradcampp_agreement_is_not_trivial() -> None:
    """Grad-CAM++ differs from Grad-CAM on this model, so the agreement above says something."""
    model, x = same_res_net(), images()
    a = compute_cams(model, x, "gradcampp", layer="3", targets=[0, 2, 1])
    b = compute_cams(model, x, "gradcam", layer="3", targets=[0, 2, 1])
    assert float((a - b).abs().max()) > 1e-2


def test_eigencam_agrees_with_pytorch_grad_cam_up_to_svd_sign() -> None:
    """The SVD's sign is arbitrary: pytorch-grad-cam keeps whatever numpy returns, we orient the
    map along the mean activation. So per sample ours equals theirs computed with one of the two
    signs: compare against relu(±projection), normalized."""
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    model, x = same_res_net(), images(4)
    ours = compute_cams(model, x, "eigencam", layer="3")
    with torch.no_grad():
        act = model[:4](x)
    proj = torch.from_numpy(get_2d_projection(act.numpy()))
    end_to_end = normalize_maps(theirs("EigenCAM", model, x, [0] * 4))
    assert torch.allclose(end_to_end, normalize_maps(proj.clamp_min(0)), atol=TOL)
    for i in range(4):
        candidates = [normalize_maps((s * proj[i : i + 1]).clamp_min(0)) for s in (1.0, -1.0)]
        best = min(float((ours[i] - c[0]).abs().max()) for c in candidates)
        assert best <= TOL, i


# -- MONAI -------------------------------------------------------------------------------------
class MonaiNet(nn.Module):
    """A GAP + linear net with a strided layer (MONAI's CAM needs the classifier by name)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2, padding=1)
        )
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.features(x))).flatten(1))


def identity(x: torch.Tensor) -> torch.Tensor:
    return x


@pytest.mark.parametrize("target", [0, 2])
def test_cam_agrees_with_monai_at_batch_one(target: int) -> None:
    """MONAI's CAM applies the classifier at every position (bias included: a constant, removed
    by normalization) and no ReLU: compare our unrectified CAM, normalized, at both resolutions."""
    model, x = MonaiNet(), images(1, size=12)
    ref_cam = monai_cam.CAM(copy.deepcopy(model), "act", "fc", postprocessing=identity)
    ref_low = normalize_maps(ref_cam.compute_map(x, class_idx=[target])[:, 0].detach())
    ref_up = normalize_maps(ref_cam(x, class_idx=[target])[:, 0].detach())
    ours = make_method(model, "cam", layer="act", classifier="fc")
    low = ours(x, target, upsample=False, relu=False).maps
    up = ours(x, target, relu=False).maps
    assert low.shape == (1, 6, 6) and up.shape == (1, 12, 12)
    assert float((low - ref_low).abs().max()) <= TOL
    assert float((up - ref_up).abs().max()) <= TOL


@pytest.mark.parametrize("target", [0, 1])
def test_gradcam_agrees_with_monai_at_batch_one(target: int) -> None:
    model, x = MonaiNet(), images(1, size=12, seed=5)
    ref = monai_cam.GradCAM(copy.deepcopy(model), "features.2", postprocessing=identity)
    ref_up = normalize_maps(ref(x, class_idx=target)[:, 0].detach())
    ours = compute_cams(model, x, "gradcam", layer="features.2", targets=target)
    assert (ours > 0.05).any()
    assert float((ours - ref_up).abs().max()) <= TOL


def test_monai_default_normalizer_inverts_ours_does_not() -> None:
    model, x = MonaiNet(), images(1, size=12, seed=5)
    ref = monai_cam.GradCAM(copy.deepcopy(model), "features.2")  # default postprocessing
    inverted = ref(x, class_idx=1)[:, 0].detach()
    ours = compute_cams(model, x, "gradcam", layer="features.2", targets=1)
    assert torch.allclose(ours, 1 - inverted, atol=TOL)  # MONAI: min → 1; ours: min → 0
