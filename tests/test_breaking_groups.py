"""A channel group whose cut breaks the model's forward (a residual over a slice of the
channels, as in ReXNet) is found on its own and left whole, named with the reason; the
other groups stay knobs - instead of the whole model being refused."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from search_spaces.generic import ModelSource, left_alone, register_source


class SliceResidual(nn.Module):
    """stem -> [1x1 expand -> 3x3 -> out; out[:, :8] += input] -> head -> pool -> fc."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.expand = nn.Sequential(nn.Conv2d(8, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.conv = nn.Sequential(nn.Conv2d(16, 12, 3, padding=1), nn.BatchNorm2d(12))
        self.head = nn.Sequential(nn.Conv2d(12, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        y = self.conv(self.expand(x))
        y = torch.cat([y[:, :8] + x, y[:, 8:]], dim=1)
        return self.fc(self.head(y).mean((2, 3)))


def make_slice_residual(num_classes: int = 5) -> nn.Module:
    return SliceResidual(num_classes)


def test_the_breaking_groups_are_left_whole_and_the_rest_are_knobs() -> None:
    source = ModelSource("factory", f"{__name__}:make_slice_residual")
    fam = register_source(source, input_shape=(3, 16, 16))
    alone = left_alone(fam.name)  # consumer -> why its input channels are not a knob
    broken = {k for k, why in alone.items() if "breaks the model's forward" in why}
    # the stem's channels (read by expand.0) and the concatenation's (read by head.0) run
    # through the slice residual: named, with the reason
    assert {"expand.0", "head.0"} <= broken, alone
    # the expand -> conv and head -> fc widths are free of the slice: they stay knobs (keyed
    # by their producers)
    assert dict(fam.default_widths) == {"expand.0": 16, "head.0": 16}
    import search_spaces

    spec = search_spaces.default_spec(fam.name).with_widths({"expand.0": 5})
    model: Any = search_spaces.build(spec)
    assert model.expand[0].out_channels == 5
    assert model(torch.zeros(2, 3, 16, 16)).shape == (2, 5)
