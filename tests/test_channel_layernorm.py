"""ConvNeXt-style layers: a LayerNorm over channels (channels-last, and a ``LayerNorm2d``
subclass defined outside torch whose forward reads its own ``normalized_shape``), Linear
layers applied to channels-last tokens, and a bare per-channel layer scale. The inner MLP
width is cut exactly and refitted on token rows; the residual stream is cut through the
LayerNorms and the layer scale; other parametrised layers are still refused."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import pruning


class LayerNorm2d(nn.LayerNorm):
    """As timm writes it: a LayerNorm over dimension 1 of an NCHW tensor."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class Block(nn.Module):
    """dw 7x7 -> channels-last LayerNorm -> Linear(c, 4c) -> GELU -> Linear(4c, c) ->
    layer scale -> + identity (torchvision's CNBlock without stochastic depth)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, 4 * c)
        self.fc2 = nn.Linear(4 * c, c)
        self.layer_scale = nn.Parameter(torch.linspace(0.1, 0.8, c).reshape(c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y)))).permute(0, 3, 1, 2)
        return x + self.layer_scale * y


class TinyConvNeXt(nn.Module):
    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, c, 2, stride=2)
        self.stem_norm = LayerNorm2d(c)
        self.block1 = Block(c)
        self.block2 = Block(c)
        self.head_norm = nn.LayerNorm(c)
        self.fc = nn.Linear(c, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.block1(self.stem_norm(self.stem(x))))
        return self.fc(self.head_norm(x.mean((2, 3))))


def _calib(n: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(8, 3, 16, 16, generator=g) for _ in range(n)]


def _model() -> Any:
    torch.manual_seed(0)
    model = TinyConvNeXt().eval()
    with torch.no_grad():  # per-channel affine parameters that tell the channels apart
        for m in model.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model


def _config(cache: bool = True) -> pruning.SparsifyConfig:
    return pruning.SparsifyConfig(progress=False, residual="coupled", cache_activations=cache)


def test_inner_mlp_channels_with_no_weight_are_cut_exactly() -> None:
    model = _model()
    dead = [1, 4, 9, 20, 31]  # hidden channels fc2 never reads
    with torch.no_grad():
        model.block1.fc2.weight[:, dead] = 0.0
    keep = [i for i in range(32) if i not in dead]
    x = torch.randn(3, 3, 16, 16)
    before = model(x)
    res = pruning.prune_to_widths(model, {"block1.fc2": keep}, _calib(), refit=False,
                                  config=_config())
    pruned: Any = res.model.eval()
    assert pruned.block1.fc1.out_features == pruned.block1.fc2.in_features == len(keep)
    assert torch.allclose(pruned(x), before, atol=1e-6)


@pytest.mark.parametrize("cache", [True, False])
def test_the_refit_on_token_rows_recovers_the_layer_output(cache: bool) -> None:
    """fc2 reads (N, H, W, 4c) tokens: its refit is a least-squares fit over every token."""
    model = _model()
    keep = list(range(0, 32, 2))
    calib = _calib()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fitted = pruning.prune_to_widths(model, {"block1.fc2": keep}, calib, refit=True,
                                         config=_config(cache)).model.eval()
    plain = pruning.prune_to_widths(model, {"block1.fc2": keep}, calib, refit=False,
                                    config=_config(cache)).model.eval()

    def fc2_error(net: Any) -> float:
        got: list[torch.Tensor] = []
        want: list[torch.Tensor] = []
        h1 = net.block1.fc2.register_forward_hook(lambda _m, _a, y: got.append(y))
        h2 = model.block1.fc2.register_forward_hook(lambda _m, _a, y: want.append(y))
        with torch.no_grad():
            for x in calib:
                net(x)
                model(x)
        h1.remove()
        h2.remove()
        return float(sum(((a - b) ** 2).sum() for a, b in zip(got, want, strict=True)))

    assert fc2_error(fitted) < 0.5 * fc2_error(plain)


def test_cached_and_uncached_passes_agree() -> None:
    model = _model()
    keep = {"block1.fc2": list(range(0, 32, 2)), "block2.fc2": list(range(16))}
    x = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        a = pruning.prune_to_widths(model, keep, _calib(), config=_config(True)).model.eval()
        b = pruning.prune_to_widths(model, keep, _calib(), config=_config(False)).model.eval()
    assert torch.allclose(a(x), b(x), atol=1e-4)


def test_the_residual_stream_is_cut_through_layernorms_and_the_layer_scale() -> None:
    model = _model()
    stream = [0, 1, 2, 3, 5, 6]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = pruning.prune_to_widths(model, {"block1.fc1": stream}, _calib(), config=_config())
    pruned: Any = res.model.eval()
    c = len(stream)
    assert pruned.stem.out_channels == c
    assert pruned.stem_norm.normalized_shape == (c,) and pruned.stem_norm.weight.shape == (c,)
    for blk in (pruned.block1, pruned.block2):
        assert blk.norm.normalized_shape == (c,) and blk.layer_scale.shape == (c, 1, 1)
        assert blk.dw.groups == blk.dw.out_channels == c and blk.fc2.out_features == c
    assert pruned.head_norm.weight.shape == (c,) and pruned.fc.in_features == c
    # the kept channels keep their own per-channel parameters
    assert torch.equal(pruned.block2.layer_scale, model.block2.layer_scale[stream])
    assert torch.equal(pruned.stem_norm.weight, model.stem_norm.weight[stream])
    out = pruned(torch.randn(2, 3, 16, 16))
    assert out.shape == (2, 5) and bool(torch.isfinite(out).all())


def test_a_budget_reaches_its_macs_on_the_convnext_block() -> None:
    model = _model()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        pruned: Any = pruning.sparsify(model, _calib(), target_macs=0.5,
                                       config=_config()).model
    shape = (3, 16, 16)
    assert pruning.count_macs(pruned, shape) <= 0.5 * 1.02 * pruning.count_macs(model, shape)
    assert pruned.block1.fc1.out_features < 32 and pruned.block2.fc1.out_features < 32


class _MatrixParameter(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.mix = nn.Parameter(torch.eye(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) @ self.mix


@pytest.mark.parametrize(
    ("model", "name", "kind"),
    [
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Conv2d(4, 4, 3)), "1",
         "GroupNorm"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4), nn.Conv2d(4, 4, 3)), "1", "PReLU"),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 6, 6]), nn.Conv2d(4, 4, 3)), "1",
         "LayerNorm"),
        (_MatrixParameter(), "<root module>", "_MatrixParameter"),
    ],
)
def test_other_parametrised_layers_are_still_refused(model: nn.Module, name: str,
                                                     kind: str) -> None:
    with pytest.raises(pruning.UnsupportedLayerError) as err:
        pruning.surgery.check_supported(model)
    assert repr(name) in str(err.value) and kind in str(err.value)
