"""A small CNN for 8x8 inputs (scikit-learn's digits): the quickstart family.

conv3x3(16)-BN-ReLU, conv3x3(32)-BN-ReLU, pool, conv3x3(64)-BN-ReLU, pool, fc64, fc(classes).
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import ArchSpec, LayerGroup, ModelFamily, read_widths_by_name, register_family

WIDTHS = {"conv1": 16, "conv2": 32, "conv3": 64, "fc1": 64}


def _conv_bn(cin: int, cout: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    return nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)


class SmallCNN(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        w = spec.widths
        c, h, wd = spec.input_shape
        self.conv1, self.bn1 = _conv_bn(c, w["conv1"])
        self.conv2, self.bn2 = _conv_bn(w["conv1"], w["conv2"])
        self.conv3, self.bn3 = _conv_bn(w["conv2"], w["conv3"])
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        self.fc1 = nn.Linear(w["conv3"] * (h // 4) * (wd // 4), w["fc1"])
        self.fc2 = nn.Linear(w["fc1"], spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = self.pool(self.act(self.bn2(self.conv2(x))))
        x = self.pool(self.act(self.bn3(self.conv3(x))))
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        return self.fc2(x)


FAMILY = register_family(
    ModelFamily(
        name="small_cnn",
        builder=SmallCNN,
        default_widths=WIDTHS,
        input_shape=(1, 8, 8),
        num_classes=10,
        read_widths=read_widths_by_name(list(WIDTHS)),
        groups=(LayerGroup("conv", ("conv1", "conv2", "conv3")), LayerGroup("fc", ("fc1",))),
        description="small CNN for 8x8 inputs (scikit-learn digits quickstart)",
    )
)
