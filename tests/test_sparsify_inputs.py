"""What sparsify does with its calibration input (issue 12 item 5).

A one-shot generator gives the same result as the same batches in a list (no batch is
lost to the trace, none beyond max_batches is read), and batches that do not fit the
model are named before any work.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn

import pruning
from pruning import InputMismatchError, RegressionConfig, SparsifyConfig


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 6, 3, padding=1)
        self.fc = nn.Linear(6 * 4 * 4, 5)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        return self.fc(torch.flatten(x, 1))


def _batches(n: int = 6) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    # Distinct batches: a lost first batch changes the moments, hence the weights.
    return [torch.randn(48, 3, 4, 4, generator=g) * (1 + i) for i in range(n)]


def _cfg(**kw: object) -> SparsifyConfig:
    return SparsifyConfig(regression=RegressionConfig(eps_L2=0.3), progress=False, **kw)  # type: ignore[arg-type]


def _same(a: pruning.SparsifyResult, b: pruning.SparsifyResult) -> None:
    assert [r.kept_indices for r in a.report] == [r.kept_indices for r in b.report]
    for (n, p), (_, q) in zip(a.model.state_dict().items(), b.model.state_dict().items(),
                              strict=True):
        assert torch.equal(p, q), n


@pytest.mark.parametrize("cache", [True, False])
def test_a_generator_gives_the_same_result_as_a_list(cache: bool) -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    listed = pruning.sparsify(net, _batches(), _cfg(cache_activations=cache))
    gen = pruning.sparsify(net, (b for b in _batches()), _cfg(cache_activations=cache))
    _same(listed, gen)


def test_a_generator_is_read_no_further_than_max_batches() -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    seen: list[int] = []

    def counting() -> Iterator[torch.Tensor]:
        for i, b in enumerate(_batches()):
            seen.append(i)
            yield b

    it = counting()
    res = pruning.sparsify(net, it, _cfg(max_batches=3))
    assert seen == [0, 1, 2]
    assert next(it) is not None and seen == [0, 1, 2, 3]  # the rest is still there
    _same(res, pruning.sparsify(net, _batches()[:3], _cfg()))


def test_prune_to_widths_takes_a_generator_too() -> None:
    torch.manual_seed(0)
    net = _Net().eval()
    keep = {"conv2": [0, 2, 5], "fc": [1, 3]}
    _same(pruning.prune_to_widths(net, keep, _batches(), config=_cfg()),
          pruning.prune_to_widths(net, keep, iter(_batches()), config=_cfg()))


def test_a_wrong_channel_count_is_named() -> None:
    net = _Net().eval()
    gray = [torch.randn(4, 1, 4, 4)]
    with pytest.raises(InputMismatchError, match=r"'conv1' \(Conv2d\) expects 3 input channels, got 1"):
        pruning.sparsify(net, gray, _cfg())
    with pytest.raises(ValueError, match=r"shape \(1, 1, 4, 4\)"):
        pruning.prune_to_widths(net, {"conv2": [0]}, gray, config=_cfg())


def test_a_wrong_feature_count_is_named() -> None:
    mlp = nn.Sequential(nn.Linear(10, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
    with pytest.raises(InputMismatchError, match=r"'0' \(Linear\) expects 10 input features, got 7"):
        pruning.sparsify(mlp, [torch.randn(4, 7)], _cfg())
    with pytest.raises(InputMismatchError, match="example_inputs"):
        pruning.prune_to_widths(mlp, {"2": [0]}, refit=False, example_inputs=torch.randn(2, 7))
