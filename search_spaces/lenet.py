"""LeNet-5 for MNIST (1x28x28): conv5x5(6)-pool-conv5x5(16)-pool-fc120-fc84-fc(classes).

61,706 parameters and 0.42 M MACs per image at the default widths (LeCun et al. 1998, with
ReLU and max-pooling as in the pruning literature).
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import ArchSpec, LayerGroup, ModelFamily, read_widths_by_name, register_family

WIDTHS = {"conv1": 6, "conv2": 16, "fc1": 120, "fc2": 84}


class LeNet5(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        w = spec.widths
        c, h, wd = spec.input_shape
        self.conv1 = nn.Conv2d(c, w["conv1"], 5, padding=2)
        self.conv2 = nn.Conv2d(w["conv1"], w["conv2"], 5)
        self.pool = nn.MaxPool2d(2)
        self.act = nn.ReLU()
        fh, fw = ((h // 2) - 4) // 2, ((wd // 2) - 4) // 2
        self.fc1 = nn.Linear(w["conv2"] * fh * fw, w["fc1"])
        self.fc2 = nn.Linear(w["fc1"], w["fc2"])
        self.fc3 = nn.Linear(w["fc2"], spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.act(self.conv1(x)))
        x = self.pool(self.act(self.conv2(x)))
        x = torch.flatten(x, 1)
        x = self.act(self.fc1(x))
        x = self.act(self.fc2(x))
        return self.fc3(x)


FAMILY = register_family(
    ModelFamily(
        name="lenet5",
        builder=LeNet5,
        default_widths=WIDTHS,
        input_shape=(1, 28, 28),
        num_classes=10,
        read_widths=read_widths_by_name(list(WIDTHS)),
        groups=(LayerGroup("conv", ("conv1", "conv2")), LayerGroup("fc", ("fc1", "fc2"))),
        description="LeNet-5, MNIST 1x28x28 (61.7 k params, 0.42 M MACs)",
    )
)
