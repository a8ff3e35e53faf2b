"""Layer layouts: channels-first, channels-last and token outputs, detected or declared, 2-D and
3-D; what cannot be read is refused. Every method gives the same map on a channels-last or token
view of an activation as on the channels-first activation itself; torchvision's ViT and Swin and
MONAI's 3-D ViT and Swin encoders against Grad-CAM worked out with autograd in the test and
against pytorch-grad-cam's ``reshape_transform``."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import torch
from torch import nn

from braincam.cam import METHODS, TokenGrid, compute_cams, make_method, normalize_maps
from braincam.cam.layout import LAYOUTS, _fits, _strided, _token_grid, resolve_layout
from braincam.errors import ModelError

LAYER_METHODS = [m for m in METHODS if m != "fullgrad"]
OPTIONS = {"sscam": {"num_samples": 2}, "iscam": {"num_samples": 2}, "smoothgradcampp": {}}


# -- detection ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "spatial", "kind"),
    [
        ((2, 6, 6, 6), (12, 12), "channels_first"),  # ambiguous: the PyTorch convention wins
        ((2, 512, 7, 7), (224, 224), "channels_first"),
        ((2, 6, 7, 6), (13, 12), "channels_first"),  # odd sizes: stride 2 with padding
        ((2, 8, 4, 5, 3), (8, 10, 6), "channels_first"),
        ((2, 6, 1, 6, 6), (1, 12, 12), "channels_first"),  # depth-1 volume
        ((2, 8, 16, 32, 32), (16, 64, 64), "channels_first"),  # anisotropic (1, 2, 2) stride
        ((2, 2, 2, 768), (64, 64), "channels_last"),  # swin_t's norm (the case)
        ((2, 56, 56, 96), (224, 224), "channels_last"),  # a ConvNeXt / Swin block inside
        ((2, 16, 16, 16, 12), (32, 32, 32), "channels_last"),  # MONAI's 3-D Swin block
    ],
)
def test_auto_layout(shape: tuple[int, ...], spatial: tuple[int, ...], kind: str) -> None:
    assert resolve_layout(shape, spatial, "auto", None, "x").kind == kind


@pytest.mark.parametrize(
    ("shape", "spatial", "layout", "match"),
    [
        ((2, 300, 5, 400), (64, 64), "auto", "cannot tell the layout"),
        ((2, 197, 768), (224, 224), "auto", r"token sequence.*TokenGrid\(\(14, 14\), prefix=1\)"),
        ((2, 10), (12, 12), "auto", "not spatial"),
        ((2, 6, 6, 6), (12, 12), "tokens", r"needs \(N, L, C\)"),
        ((2, 37, 8), (12, 10), "tokens", "do not form a strided grid"),
        ((2, 6, 6), (12, 12, 12), "channels_last", "not spatial"),
        ((2, 6, 6, 6), (12, 12), "nhwc", "layout must be one of"),
    ],
)
def test_unreadable_layouts_are_refused(
    shape: tuple[int, ...], spatial: tuple[int, ...], layout: str, match: str
) -> None:
    with pytest.raises(ModelError, match=match):
        resolve_layout(shape, spatial, layout, None, "x")


def test_token_grid_inference_and_reshape_checks() -> None:
    lay = resolve_layout((2, 197, 768), (224, 224), "tokens", None, "x")
    assert lay.kind == "tokens (14, 14)+1"
    assert (
        resolve_layout((2, 64, 8), (32, 32, 32), "tokens", None, "x").kind == "tokens (4, 4, 4)+0"
    )
    t = torch.arange(2 * 5 * 3.0).view(2, 5, 3)  # one class token, 2×2 patches, 3 channels
    grid = TokenGrid((2, 2), prefix=1)(t)
    assert grid.shape == (2, 3, 2, 2)
    assert torch.equal(grid[1, :, 1, 0], t[1, 1 + 2])  # patch (1, 0) is token 1 + 2
    with pytest.raises(ModelError, match="expects"):
        TokenGrid((3, 3), prefix=1)(t)
    bad = resolve_layout((2, 5, 3), (8, 8), "auto", lambda a: a.flatten(1), "x")
    with pytest.raises(ModelError, match=r"reshape= must give \(N, C, \*grid\)"):
        bad.to_grid(t)


# -- the same activation seen through other layouts ----------------------------------------
class ToLast(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(1, -1)


class ToFirst(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.movedim(-1, 1)


class ToTokens(nn.Module):
    """(N, C, *s) → (N, 1 + P, C) with a leading 'class token' (the mean token)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).transpose(1, 2)
        return torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1)


class Views(nn.Module):
    """conv(stride 2) → ReLU ["act"] → channels-last ["last"] → back → tokens ["tokens"] →
    back → GAP → linear: "act", "last" and "tokens" hold the same activation."""

    def __init__(self, dim: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = nn.Conv2d if dim == 2 else nn.Conv3d
        self.stem = nn.Sequential(conv(1, 4, 3, padding=1), nn.ReLU(), conv(4, 7, 3, 2, 1))
        self.act = nn.ReLU()
        self.last, self.first, self.tokens = ToLast(), ToFirst(), ToTokens()
        self.fc = nn.Linear(7, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.act(self.stem(x))
        a = self.first(self.last(a))
        t = self.tokens(a)[:, 1:]  # the patch tokens
        return self.fc(t.mean(dim=1))


@pytest.mark.parametrize("method", LAYER_METHODS)
@pytest.mark.parametrize("dim", [2, 3])
def test_channels_last_and_token_views_give_the_channels_first_map(method: str, dim: int) -> None:
    model = Views(dim)
    size = (12, 10) if dim == 2 else (6, 8, 4)
    x = torch.randn(3, 1, *size, generator=torch.Generator().manual_seed(1))
    targets = [0, 2, 1]
    kw = (
        {**OPTIONS.get(method, {}), "classifier": "fc"}
        if method == "cam"
        else OPTIONS.get(method, {})
    )
    ref = make_method(model, method, layer="act", **kw)(x, targets)
    for layer, options in (("last", {}), ("tokens", {"layout": "tokens"})):
        got = make_method(model, method, layer=layer, **options, **kw)(x, targets)
        assert got.raw.shape == ref.raw.shape, layer
        torch.testing.assert_close(got.maps, ref.maps, atol=1e-5, rtol=1e-5)
    assert float(ref.maps.max()) == 1.0


# -- real transformers ---------------------------------------------------------------------
def gradcam_by_hand(
    model: nn.Module, layer: nn.Module, x: torch.Tensor, targets: list[int], to_grid: Callable
) -> torch.Tensor:
    """Grad-CAM with autograd on the whole model: hook the layer, differentiate, rearrange."""
    store: dict[str, torch.Tensor] = {}
    handle = layer.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    model.eval()  # the tests' own models: no copy needed (a ViT-B copy costs seconds)
    try:
        out = model(x)
    finally:
        handle.remove()
    (grad,) = torch.autograd.grad(out[torch.arange(len(targets)), targets].sum(), store["a"])
    act, g = to_grid(store["a"].detach()), to_grid(grad)
    w = g.flatten(2).mean(-1)
    return (w.view(*w.shape, *[1] * (act.ndim - 2)) * act).sum(1).clamp_min(0)


def pgc_gradcam(
    model: nn.Module, layer: str, x: torch.Tensor, targets: list[int], reshape: Callable
):
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    ref = model  # the test's own model; pytorch-grad-cam leaves it in eval mode, hooks removed
    with pgc.GradCAM(ref, [ref.get_submodule(layer)], reshape_transform=reshape) as cam:
        out = cam(x, [ClassifierOutputTarget(t) for t in targets])
    return normalize_maps(torch.from_numpy(out))


def test_swin_t_norm_is_channels_last_and_matches_by_hand_and_pytorch_grad_cam() -> None:
    """The issue's case: swin_t's ``norm`` is (N, H, W, C); it was read as (N, C, H, W). swin_t's
    class with one narrow block per stage (the full swin_t takes seconds to build and run)."""
    swin = pytest.importorskip("torchvision.models.swin_transformer")
    torch.manual_seed(0)
    model = swin.SwinTransformer(
        patch_size=[4, 4], embed_dim=24, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4],
        window_size=[2, 2], num_classes=3,
    )  # fmt: skip
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    targets = [2, 0]
    res = make_method(model, "gradcam", layer="norm")(x, targets)
    assert res.raw.shape == (2, 2, 2)  # a 2×2 grid, not (4, 768)
    by_hand = gradcam_by_hand(model, model.norm, x, targets, lambda t: t.movedim(-1, 1))
    torch.testing.assert_close(res.raw, by_hand, atol=1e-5, rtol=1e-4)
    assert float(by_hand.max()) > 0
    ref = pgc_gradcam(model, "norm", x, targets, lambda t: t.permute(0, 3, 1, 2))
    assert float((res.maps - ref).abs().max()) <= 1e-4


def test_vit_b_16_tokens_match_by_hand_and_pytorch_grad_cam() -> None:
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(0)
    model = tv.vit_b_16(image_size=64, num_classes=3)  # 4×4 patches + the class token
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    layer = "encoder.layers.encoder_layer_11.ln_1"  # the last block's input (as pgc's tutorial)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    targets = [1, 2]
    with pytest.raises(ModelError, match=r"token sequence.*TokenGrid\(\(4, 4\), prefix=1\)"):
        compute_cams(model, x, "gradcam", layer=layer)
    res = make_method(model, "gradcam", layer=layer, layout="tokens")(x, targets)
    explicit = make_method(model, "gradcam", layer=layer, reshape=TokenGrid((4, 4), 1))(x, targets)
    assert res.raw.shape == (2, 4, 4) and torch.equal(res.maps, explicit.maps)

    def theirs(t: torch.Tensor) -> torch.Tensor:  # pgc's ViT recipe: drop the class token
        return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)

    by_hand = gradcam_by_hand(model, model.get_submodule(layer), x, targets, theirs)
    torch.testing.assert_close(res.raw, by_hand, atol=1e-5, rtol=1e-4)
    assert float(by_hand.max()) > 0
    ref = pgc_gradcam(model, layer, x, targets, theirs)
    assert float((res.maps - ref).abs().max()) <= 1e-4


class Logits(nn.Module):
    """MONAI's ViT returns (logits, hidden states): keep the logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)[0]


def monai_vit(patch: tuple[int, int, int]) -> Logits:
    nets = pytest.importorskip("monai.networks.nets")
    pytest.importorskip("einops")
    torch.manual_seed(0)
    vit = nets.ViT(
        in_channels=1, img_size=(16, 16, 16), patch_size=patch, hidden_size=48, mlp_dim=96,
        num_layers=2, num_heads=4, classification=True, num_classes=2,
    )  # fmt: skip
    return Logits(vit)


def test_monai_3d_vit_tokens_match_by_hand() -> None:
    model = monai_vit((8, 8, 8))  # 2×2×2 patches + the class token
    x = torch.randn(3, 1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    targets = [1, 0, 1]
    layer = "net.blocks.1.norm1"
    res = make_method(model, "gradcam", layer=layer, layout="tokens")(x, targets)
    assert res.raw.shape == (3, 2, 2, 2) and res.maps.shape == (3, 16, 16, 16)
    by_hand = gradcam_by_hand(
        model, model.get_submodule(layer), x, targets, TokenGrid((2, 2, 2), 1)
    )
    torch.testing.assert_close(res.raw, by_hand, atol=1e-5, rtol=1e-4)
    assert float(by_hand.max()) > 0


def test_anisotropic_3d_patches_need_a_declared_grid() -> None:
    """17 tokens for 16³ with (4, 8, 8) patches: not guessed (a 2×2×2 grid + 9 tokens would
    fit the count), refused; the declared grid works and matches autograd."""
    model = monai_vit((4, 8, 8))
    x = torch.randn(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    layer = "net.blocks.1.norm1"
    with pytest.raises(ModelError, match="17 tokens do not form a strided grid"):
        compute_cams(model, x, "gradcam", layer=layer, layout="tokens")
    grid = TokenGrid((4, 2, 2), prefix=1)
    res = make_method(model, "gradcam", layer=layer, reshape=grid)(x, [0, 1])
    assert res.raw.shape == (2, 4, 2, 2)
    by_hand = gradcam_by_hand(model, model.get_submodule(layer), x, [0, 1], grid)
    torch.testing.assert_close(res.raw, by_hand, atol=1e-5, rtol=1e-4)


class SwinClassifier(nn.Module):
    """MONAI's 3-D Swin encoder (SwinUNETR's) → GAP → linear."""

    def __init__(self) -> None:
        super().__init__()
        from monai.networks.nets.swin_unetr import SwinTransformer

        torch.manual_seed(0)
        self.enc = SwinTransformer(
            in_chans=1, embed_dim=12, window_size=(2, 2, 2), patch_size=(2, 2, 2),
            depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), spatial_dims=3,
        )  # fmt: skip
        self.fc = nn.Linear(192, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.enc(x)[-1].mean(dim=(2, 3, 4)))


def test_monai_swin_encoder_block_is_channels_last_3d() -> None:
    pytest.importorskip("monai.networks.nets")
    pytest.importorskip("einops")
    model = SwinClassifier()
    x = torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(5))
    layer = "enc.layers1.0.blocks.0"  # (N, 16, 16, 16, 12) channels-last
    res = make_method(model, "gradcam", layer=layer)(x, [0, 1])
    assert res.raw.shape == (2, 16, 16, 16)
    by_hand = gradcam_by_hand(
        model, model.get_submodule(layer), x, [0, 1], lambda t: t.movedim(-1, 1)
    )
    torch.testing.assert_close(res.raw, by_hand, atol=1e-5, rtol=1e-4)
    assert float(by_hand.max()) > 0


# -- the resolved layouts' values and the refusals' exact messages (issue 19) ----------------
def _check_to_grid(lay, shape: tuple[int, ...], channels_last: bool) -> None:
    """``to_grid`` returns the activation itself when channels-first, else moves the last axis
    to the second, value for value."""
    t = torch.arange(float(torch.Size(shape).numel())).view(shape)
    got = lay.to_grid(t)
    if channels_last:
        assert torch.equal(got, t.movedim(-1, 1))
        assert got.shape == (shape[0], shape[-1], *shape[1:-1])
    else:
        assert got is t


@pytest.mark.parametrize(
    ("shape", "spatial", "layout", "kind", "channel_dim"),
    [
        ((2, 6, 6, 6), (12, 12), "auto", "channels_first", 1),
        ((2, 2, 2, 768), (64, 64), "auto", "channels_last", -1),
        ((2, 8, 8, 5), (8, 8), "auto", "channels_last", -1),  # stride 1, channels last
        ((2, 5, 8, 8), (8, 8), "auto", "channels_first", 1),  # stride 1, channels first
        ((2, 8, 16, 32, 32), (16, 64, 64), "auto", "channels_first", 1),  # no stride, fits
        ((2, 4, 8), (16,), "auto", "channels_first", 1),  # 1-D input: (N, C, L), not tokens
        ((2, 3, 5, 7), (8, 8), "channels_first", "channels_first", 1),
        ((2, 2, 2, 768), (64, 64), "channels_first", "channels_first", 1),  # declared: kept
        ((2, 3, 5, 7), (8, 8), "channels_last", "channels_last", -1),
        ((2, 3, 5, 7, 4), (8, 8, 8), "channels_last", "channels_last", -1),
    ],
)
def test_resolved_layout_kind_channel_axis_and_conversion(
    shape: tuple[int, ...], spatial: tuple[int, ...], layout: str, kind: str, channel_dim: int
) -> None:
    lay = resolve_layout(list(shape), list(spatial), layout, None, "x")
    assert (lay.kind, lay.channel_dim) == (kind, channel_dim)
    _check_to_grid(lay, shape, channels_last=channel_dim == -1)


def test_token_and_custom_layouts_keep_channels_last() -> None:
    lay = resolve_layout(torch.Size((2, 197, 768)), torch.Size((224, 224)), "tokens", None, "x")
    assert (lay.kind, lay.channel_dim, lay.to_grid) == (
        "tokens (14, 14)+1",
        -1,
        TokenGrid((14, 14), 1),
    )
    t = torch.arange(2 * 6 * 3.0).view(2, 6, 3)  # 1-D input of 10: 5 patches of 2 + 1 token
    lay = resolve_layout((2, 6, 3), (10,), "tokens", None, "x")
    assert (lay.kind, lay.channel_dim) == ("tokens (5,)+1", -1)
    assert torch.equal(lay.to_grid(t), t[:, 1:].transpose(1, 2))

    def flat_to_grid(a: torch.Tensor) -> torch.Tensor:
        return a[:, 1:].reshape(2, 2, 2, 3).permute(0, 3, 1, 2)

    t = torch.arange(2 * 5 * 3.0).view(2, 5, 3)
    for layout in LAYOUTS:  # reshape= overrides every layout
        lay = resolve_layout((2, 5, 3), (8, 8), layout, flat_to_grid, "x")
        assert (lay.kind, lay.channel_dim) == ("custom", -1)
        assert torch.equal(lay.to_grid(t), flat_to_grid(t))


def _exactly(message: str) -> str:
    return "^" + re.escape(message) + "$"


WAY_OUT = (
    "pass layout='channels_first', 'channels_last' or 'tokens', or reshape= a function "
    "returning (N, C, *grid)"
)


@pytest.mark.parametrize(
    ("shape", "spatial", "layout", "message"),
    [
        (
            [2, 300, 5, 400], [64, 64], "auto",
            "layer 'x': cannot tell the layout of its output (2, 300, 5, 400) for an input of "
            "spatial size (64, 64) (neither (5, 400) nor (300, 5) fits a strided grid of it); "
            + WAY_OUT,
        ),
        (
            [2, 197, 768], [224, 224], "auto",
            "layer 'x' outputs (2, 197, 768), a token sequence (N, L, C), not a spatial map: pass "
            "layout='tokens' (grid inferred from the input size) or reshape=; "
            "e.g. reshape=TokenGrid((14, 14), prefix=1)",
        ),
        (
            [2, 37, 8], [12, 10], "auto",  # no grid to suggest
            "layer 'x' outputs (2, 37, 8), a token sequence (N, L, C), not a spatial map: pass "
            "layout='tokens' (grid inferred from the input size) or reshape=",
        ),
        (
            [2, 37, 8], [12, 10], "tokens",
            "layer 'x': 37 tokens do not form a strided grid of the input (12, 10) (after up to 5 "
            "leading class/register tokens); pass reshape=TokenGrid(grid, prefix) or your own "
            "function",
        ),
        (
            [2, 6, 6, 6], [12, 12], "tokens",
            "layer 'x': layout='tokens' needs (N, L, C), got (2, 6, 6, 6)",
        ),
        (
            [2, 10], [12, 12], "auto",
            "layer 'x' is not spatial: its output has shape (2, 10) but the input has 2 spatial "
            "dimensions; choose a convolutional layer or " + WAY_OUT,
        ),
        (
            [2, 6, 6, 6], [12, 12, 12], "channels_first",
            "layer 'x' is not spatial: its output has shape (2, 6, 6, 6) but the input has 3 "
            "spatial dimensions; choose a convolutional layer or " + WAY_OUT,
        ),
        (
            [2, 6, 6, 6], [12, 12], "nhwc",
            "layout must be one of auto, channels_first, channels_last, tokens, got 'nhwc'",
        ),
    ],
)  # fmt: skip
def test_refusals_name_the_layer_the_shapes_and_the_way_out(
    shape: list[int], spatial: list[int], layout: str, message: str
) -> None:
    with pytest.raises(ModelError, match=_exactly(message)):
        resolve_layout(shape, spatial, layout, None, "x")


def test_reshape_output_is_checked_and_named() -> None:
    t = torch.arange(2 * 5 * 3.0).view(2, 5, 3)
    with pytest.raises(ModelError, match=_exactly("reshape must be a callable, got int")):
        resolve_layout((2, 5, 3), (8, 8), "auto", 3, "x")  # type: ignore[arg-type]
    cases = [
        (lambda a: a.flatten(1), "got (2, 15)"),
        (lambda a: a.view(2, 5, 3, 1, 1), "got (2, 5, 3, 1, 1)"),
        (lambda a: (a,), "got tuple"),
    ]
    for fn, got in cases:
        lay = resolve_layout((2, 5, 3), (8, 8), "auto", fn, "enc.4")
        message = (
            f"layer 'enc.4': reshape= must give (N, C, *grid) with 2 spatial dimensions, {got}"
        )
        with pytest.raises(ModelError, match=_exactly(message)):
            lay.to_grid(t)
    lay = resolve_layout((2, 5, 3), (8, 8, 8), "auto", lambda a: a.view(2, 5, 3, 1, 1), "v")
    assert lay.to_grid(t).shape == (2, 5, 3, 1, 1)  # 3 spatial axes for a 3-D input
    with pytest.raises(ModelError, match=r"with 3 spatial dimensions, got \(2, 15\)"):
        resolve_layout((2, 5, 3), (8, 8, 8), "auto", lambda a: a.flatten(1), "v").to_grid(t)


def test_token_grid_values_and_refusals() -> None:
    t = torch.arange(2 * 7 * 3.0).view(2, 7, 3)  # 1 + 3×2 patches, 3 channels
    grid = TokenGrid((3, 2), prefix=1)(t)
    assert grid.shape == (2, 3, 3, 2)
    assert torch.equal(grid, t[:, 1:].reshape(2, 3, 2, 3).permute(0, 3, 1, 2))
    assert torch.equal(TokenGrid((6,))(t[:, 1:]), t[:, 1:].transpose(1, 2))  # no prefix
    message = "TokenGrid(grid=(3, 2), prefix=1) expects (N, 7, C) tokens, got (2, 7, 3, 1)"
    with pytest.raises(ModelError, match=_exactly(message)):
        TokenGrid((3, 2), prefix=1)(t.unsqueeze(-1))  # the right count, but not (N, L, C)
    message = "TokenGrid(grid=(3, 2), prefix=2) expects (N, 8, C) tokens, got (2, 7, 3)"
    with pytest.raises(ModelError, match=_exactly(message)):
        TokenGrid((3, 2), prefix=2)(t)


@pytest.mark.parametrize(
    ("length", "spatial", "expected"),
    [
        (197, (224, 224), ((14, 14), 1)),
        (64, (32, 32, 32), ((4, 4, 4), 0)),
        (49, (13, 13), ((7, 7), 0)),  # ⌈13/2⌉: padded patches
        (36, (13, 13), ((6, 6), 0)),  # ⌊13/2⌋
        (21, (4, 4), ((4, 4), 5)),  # stride 1 and the most leading tokens allowed
        (22, (4, 4), None),  # one leading token too many
        (16, (4, 4), ((4, 4), 0)),
        (2, (2, 2), ((1, 1), 1)),  # one patch (stride = the input) + a class token
        (6, (1, 15), ((1, 5), 1)),  # the fewest leading tokens wins; a singleton axis stays 1
        (3, (1, 15), ((1, 3), 0)),
    ],
)
def test_token_grid_inference(
    length: int, spatial: tuple[int, ...], expected: tuple[tuple[int, ...], int] | None
) -> None:
    got = _token_grid(length, spatial)
    assert got == (None if expected is None else TokenGrid(*expected))


@pytest.mark.parametrize(
    ("grid", "spatial", "fits", "strided"),
    [
        ((6, 6), (12, 12), True, True),
        ((8, 8), (8, 8), True, True),  # stride 1
        ((2,), (2,), True, True),
        ((1, 1), (1, 1), True, True),  # only singleton axes
        ((1, 6, 6), (1, 12, 12), True, True),  # a depth-1 volume
        ((7, 6), (13, 12), True, True),  # padding: 13/2 = 6.5
        ((3,), (8,), True, True),  # 8/3 ≈ 2.7
        ((3,), (4,), True, False),  # 4/1 and 4/2 are exactly one cell away: not less
        ((5, 400), (64, 64), False, False),
        ((9, 8), (8, 8), False, False),  # one axis larger than the input's
        ((0, 4), (4, 4), False, False),  # an empty axis
        ((2, 1), (2, 8), True, False),  # 2 = 2/1 but 1 ≠ 8/1; no stride fits both
        ((16, 32, 32), (16, 64, 64), True, False),  # anisotropic stride (1, 2, 2)
        ((4, 4), (8, 13), True, False),  # 13/2 = 6.5: more than a cell from 4
    ],
)
def test_fits_and_strided(
    grid: tuple[int, ...], spatial: tuple[int, ...], fits: bool, strided: bool
) -> None:
    assert (_fits(grid, spatial), _strided(grid, spatial)) == (fits, strided)


def test_grid_checks_refuse_a_rank_mismatch() -> None:
    """A grid and an input of different ranks are a caller's error, not a silent truncation."""
    for check in (_fits, _strided):
        with pytest.raises(ValueError, match="zip"):
            check((6, 6), (12, 12, 12))
        with pytest.raises(ValueError, match="zip"):
            check((6, 6, 6), (12, 12))
