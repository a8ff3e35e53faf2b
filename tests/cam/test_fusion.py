"""Several layers at once (``layer=[...]``): the fused map equals LayerCAM's fusion rule
computed here by hand from the single-layer results, for every method, 2-D and 3-D; a one-element
list is the single layer; pytorch-grad-cam's and torch-cam's multi-layer results where they
implement the same rule."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from braincam.cam import METHODS, compute_cams, make_method
from braincam.errors import ModelError
from builders.cam_nets import gap_net, images, same_res_net

#: FullGrad is a whole-network method: its layers are summed by its own formula
LAYER_METHODS = [m for m in METHODS if m not in ("fullgrad", "intgrad")]  # not one layer's
OPTIONS = {"scorecam": {"batch_size": 7}, "sscam": {"num_samples": 2}, "iscam": {"num_samples": 3}}


def minmax(maps: torch.Tensor) -> torch.Tensor:
    """Per-sample (m - min) / (max - min), 0 for a constant map (written out, not imported)."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1).values.view(-1, *[1] * (maps.ndim - 1))
    hi = flat.max(dim=1).values.view(-1, *[1] * (maps.ndim - 1))
    span = hi - lo
    return torch.where(span > 0, (maps - lo) / torch.where(span > 0, span, 1.0), 0.0)


def resize(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def layercam_rule(raws: list[torch.Tensor], size: tuple[int, ...]) -> torch.Tensor:
    """Jiang et al. 2021, eq. 9 and the element-wise maximum: max_l tanh(2 · minmax(up(M_l)))."""
    return torch.stack([torch.tanh(2 * minmax(resize(r, size))) for r in raws]).amax(dim=0)


@pytest.mark.filterwarnings("ignore::braincam.cam.CAMHeadWarning")  # CAM at the BN output
@pytest.mark.parametrize("method", LAYER_METHODS)
def test_fused_map_is_layercam_rule_of_single_layer_maps(method: str) -> None:
    model, x = gap_net(), images(3)
    targets = [2, 0, 1]
    kw = OPTIONS.get(method, {})
    # 12×12, 6×6 (pre-BN conv), 6×6; CAM needs the classifier's 6 channels: BN and ReLU outputs
    layers = ["3", "4"] if method == "cam" else ["0", "2", "4"]
    singles = [make_method(model, method, layer=name, **kw)(x, targets).raw for name in layers]
    fused = make_method(model, method, layer=layers, **kw)(x, targets)
    expected = layercam_rule(singles, (12, 12))
    assert fused.raw.shape == fused.maps.shape == (3, 12, 12)
    torch.testing.assert_close(fused.raw, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused.maps, minmax(expected), atol=1e-5, rtol=1e-5)
    for got, single in zip(fused.layers, singles, strict=True):  # each layer's own raw map
        torch.testing.assert_close(got, single, atol=1e-5, rtol=1e-5)
    # the fusion is not trivially one of the layers
    assert not torch.allclose(fused.maps, minmax(resize(singles[-1], (12, 12))), atol=1e-3)


@pytest.mark.parametrize("method", ["gradcam", "layercam", "scorecam", "eigencam", "cam"])
def test_single_element_list_is_the_single_layer(method: str) -> None:
    model, x = gap_net(), images(3)
    one = make_method(model, method, layer="4")(x, [0, 1, 2])
    listed = make_method(model, method, layer=["4"])(x, [0, 1, 2])
    assert torch.equal(one.maps, listed.maps) and torch.equal(one.raw, listed.raw)
    low = compute_cams(model, x, method, layer=["4"], targets=[0, 1, 2], upsample=False)
    assert torch.equal(
        low, compute_cams(model, x, method, layer="4", targets=[0, 1, 2], upsample=False)
    )


def test_mean_fusion_and_feature_resolution_grid() -> None:
    model, x = gap_net(), images(2)
    layers = ["2", "4"]
    singles = [make_method(model, "gradcam", layer=n)(x, [1, 2]).raw for n in layers]
    mean = make_method(model, "gradcam", layer=layers, fusion="mean")(x, [1, 2])
    expected = torch.stack([minmax(resize(r, (12, 12))) for r in singles]).mean(0)
    torch.testing.assert_close(mean.raw, expected, atol=1e-6, rtol=1e-6)
    # upsample=False fuses on the largest layer grid (12×12 here, layer "1")
    low = make_method(model, "gradcam", layer=["4", "1"])(x, [1, 2], upsample=False)
    assert low.maps.shape == (2, 12, 12)
    with pytest.raises(ModelError, match="fusion must be one of"):
        make_method(model, "gradcam", layer=layers, fusion="sum")


def test_fusion_in_3d_matches_the_rule() -> None:
    model = gap_net(dim=3)
    x = torch.randn(2, 1, 8, 10, 6, generator=torch.Generator().manual_seed(3))
    layers = ["1", "4"]
    singles = [make_method(model, "hirescam", layer=n)(x, [0, 2]).raw for n in layers]
    fused = make_method(model, "hirescam", layer=layers)(x, [0, 2])
    torch.testing.assert_close(fused.raw, layercam_rule(singles, (8, 10, 6)), atol=1e-5, rtol=0)


def test_mixed_targets_batch_equals_one_by_one_for_fused_maps() -> None:
    model, x = gap_net(), images(4)
    targets = [2, 0, 1, 2]
    cam = make_method(model, "gradcampp", layer=["2", "4"])
    together = cam(x, targets).maps
    for i, t in enumerate(targets):
        torch.testing.assert_close(together[i], cam(x[i : i + 1], t).maps[0], atol=1e-5, rtol=0)


def test_layer_list_errors() -> None:
    model = gap_net()
    with pytest.raises(ModelError, match="empty list"):
        make_method(model, "gradcam", layer=[])
    with pytest.raises(ModelError, match="lists a layer twice"):
        make_method(model, "gradcam", layer=["4", model[4]])
    with pytest.raises(ModelError, match="'9' is not in the model"):
        make_method(model, "gradcam", layer=["4", "9"])


# -- the peers' multi-layer results -------------------------------------------------------------
def test_mean_fusion_agrees_with_pytorch_grad_cam_multi_layer() -> None:
    """pytorch-grad-cam explains several layers by the mean of their min-max scaled maps: our
    ``fusion="mean"``. Both layers keep the input size, so no resampling differs."""
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, x = same_res_net(), images(3, size=10)
    targets = [0, 2, 1]
    ref_model = copy.deepcopy(model)
    with pgc.GradCAM(model=ref_model, target_layers=[ref_model[1], ref_model[3]]) as cam:
        ref = torch.from_numpy(cam(x, [ClassifierOutputTarget(t) for t in targets]))
    ours = compute_cams(model, x, "gradcam", layer=["1", "3"], targets=targets, fusion="mean")
    assert (ours > 0.05).any()
    assert float((ours - minmax(ref)).abs().max()) <= 1e-5


def test_layercam_fusion_agrees_with_torch_cam_fuse_cams() -> None:
    """torch-cam's LayerCAM.fuse_cams: tanh(2·normalized map) fused by the maximum, as ours when
    the layers keep the input size (torch-cam scales before resizing, we after)."""
    torchcam = pytest.importorskip("torchcam.methods")
    model, x = same_res_net(), images(3, size=10)
    targets = [0, 2, 1]
    ref_model = copy.deepcopy(model).eval()
    with torchcam.LayerCAM(ref_model, target_layer=["2", "4"], input_shape=(1, 10, 10)) as ext:
        out = ref_model(x)
        cams = ext(class_idx=targets, scores=out)
        ref = ext.fuse_cams(cams)
    ours = make_method(model, "layercam", layer=["2", "4"])(x, targets, relu=True)
    assert float((ours.raw - ref.detach()).abs().max()) <= 1e-5


def test_fuse_maps_and_grid_directly() -> None:
    from braincam.cam.fusion import fuse_maps, fusion_grid

    gen = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 3, 3, generator=gen), torch.rand(2, 6, 4, generator=gen)
    assert fusion_grid([a, b]) == (6, 4)  # the largest side per axis
    with pytest.raises(ValueError):  # a 2-D and a 3-D map have no common grid
        fusion_grid([a, torch.rand(2, 3, 3, 3)])
    # one map: only resized; several: LayerCAM's rule by default
    torch.testing.assert_close(fuse_maps([a], (6, 4)), resize(a, (6, 4)))
    torch.testing.assert_close(fuse_maps([a, b], (6, 4)), layercam_rule([a, b], (6, 4)))
