"""VGG-16, CIFAR variant: 13 conv3x3-BN-ReLU layers, 5 max-pools, one Linear to the classes.

14,724,042 parameters and 0.314 G MACs per 3x32x32 image at the default widths. Width keys
are the conv modules' names inside ``features`` (``"features.0"``, ``"features.3"``, ...).
"""

from __future__ import annotations

import torch
from torch import nn

from .spec import ArchSpec, LayerGroup, ModelFamily, read_widths_by_name, register_family

CFG: list[int | str] = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                        512, 512, 512, "M", 512, 512, 512, "M"]


def _layout() -> tuple[dict[str, int], list[list[str]]]:
    widths: dict[str, int] = {}
    stages: list[list[str]] = [[]]
    idx = 0
    for v in CFG:
        if v == "M":
            idx += 1
            stages.append([])
            continue
        widths[f"features.{idx}"] = int(v)
        stages[-1].append(f"features.{idx}")
        idx += 3
    return widths, [s for s in stages if s]


WIDTHS, STAGES = _layout()


class VGG16(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin, idx = spec.input_shape[0], 0
        hw = spec.input_shape[1]
        for v in CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
                hw //= 2
                idx += 1
                continue
            cout = spec.widths[f"features.{idx}"]
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True)]
            cin, idx = cout, idx + 3
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin * hw * hw, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


FAMILY = register_family(
    ModelFamily(
        name="vgg16_cifar",
        builder=VGG16,
        default_widths=WIDTHS,
        input_shape=(3, 32, 32),
        num_classes=10,
        read_widths=read_widths_by_name(list(WIDTHS)),
        groups=tuple(LayerGroup(f"stage{i + 1}", tuple(s)) for i, s in enumerate(STAGES)),
        description="VGG-16 CIFAR variant, 3x32x32 (14.7 M params, 0.31 G MACs)",
    )
)
