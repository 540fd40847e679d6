"""The rows-per-feature rule samples more positions where a layer has many features.

A small calibration set at a fixed count of positions per image gives the late layers of a
CIFAR net fewer regression rows than unknowns. ``calib_rows_per_feature`` raises each conv
layer's positions to ``k * d / images`` (d = C_in/groups * kh * kw), capped at every position,
with ``calib_positions_per_image`` as the floor; both paths of a pass (cached reference rows,
per-layer forward passes) draw the same counts and so give the same network.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import search_spaces as ss
from pruning import RegressionConfig, SparsifyConfig, sparsify
from pruning.patches import positions_for


def test_positions_follow_the_features_with_the_floor_and_the_cap() -> None:
    conv = nn.Conv2d(16, 32, 3)  # d = 144
    assert positions_for(conv, (8, 8), 100, floor=10, rows_per_feature=None) == 10
    # 10 rows per feature: 1,440 rows over 100 images -> 15 per image
    assert positions_for(conv, (8, 8), 100, floor=10, rows_per_feature=10.0) == 15
    assert positions_for(conv, (8, 8), 100, floor=20, rows_per_feature=10.0) == 20  # floor
    assert positions_for(conv, (3, 3), 100, floor=10, rows_per_feature=10.0) is None  # cap
    assert positions_for(conv, (8, 8), 100, floor=None, rows_per_feature=10.0) is None
    depthwise = nn.Conv2d(16, 16, 3, groups=16)  # d = 9 per output
    assert positions_for(depthwise, (8, 8), 10, floor=4, rows_per_feature=10.0) == 9
    with pytest.raises(ValueError, match="calib_rows_per_feature"):
        SparsifyConfig(calib_rows_per_feature=0.0)


def _loader(shape: tuple[int, ...], n: int = 24, batch: int = 8) -> DataLoader:
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(0))
    return DataLoader(TensorDataset(x, torch.zeros(n, dtype=torch.long)), batch_size=batch)


def _run(model: nn.Module, loader: DataLoader, cache: bool, rule: float | None):
    cfg = SparsifyConfig(progress=False, cache_activations=cache, calib_positions_per_image=2,
                         calib_rows_per_feature=rule, heldout_fraction=0.2, seed=1,
                         regression=RegressionConfig(eps_L2=0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d without the rule
        return sparsify(model, loader, cfg)


def test_the_rule_raises_rows_and_both_paths_agree() -> None:
    torch.manual_seed(0)
    spec = ss.default_spec("vgg16_cifar").scaled(0.0625)
    model = ss.build(spec).eval()
    loader = _loader(spec.input_shape)
    fixed = _run(model, loader, True, None)
    cached = _run(model, loader, True, 3.0)
    plain = _run(model, loader, False, 3.0)
    assert cached.engine["reference_cached"] and not plain.engine["reference_cached"]
    convs = {name: m for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    out_hw: dict[str, tuple[int, int]] = {}

    def record(name: str):
        def hook(_m: nn.Module, _a: object, y: torch.Tensor) -> None:
            out_hw.setdefault(name, (y.shape[2], y.shape[3]))
        return hook

    hooks = [m.register_forward_hook(record(name)) for name, m in convs.items()]
    with torch.no_grad():
        model(torch.zeros(1, *spec.input_shape))
    for h in hooks:
        h.remove()
    raised = 0
    for f, c, p in zip(fixed.report, cached.report, plain.report, strict=True):
        if f.skipped_reason is not None:
            continue
        assert c.samples == p.samples  # the same count drawn on both paths
        assert c.kept_indices == p.kept_indices
        assert c.samples >= f.samples
        raised += c.samples > f.samples
        if c.layer in convs:  # the rule's count over 24 images, 80 % of it fitted
            per = positions_for(convs[c.layer], out_hw[c.layer], 24, floor=2,
                                rows_per_feature=3.0)
            drawn = 24 * (out_hw[c.layer][0] * out_hw[c.layer][1] if per is None else per)
            assert 0.6 * drawn <= c.samples <= drawn, c.layer
    assert raised >= 3, "the rule changed no layer: the test is void"
    x = torch.randn(4, *spec.input_shape)
    with torch.no_grad():
        torch.testing.assert_close(cached.model(x), plain.model(x), rtol=1e-4, atol=1e-5)
