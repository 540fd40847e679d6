"""ResNet-18, CIFAR variant: 3x3 stem, no max-pool, BasicBlocks [2, 2, 2, 2].

11,173,962 parameters and 0.557 G MACs per 3x32x32 image at the default widths.

Width keys: ``stage1``..``stage4`` are the residual-stream widths (the stem and every
block's ``conv2``/shortcut of that stage share them: coupled by the additions), and
``layer{i}.{j}.conv1`` the inner width of each block (free to prune on its own).
The shortcut projection exists exactly where the unpruned network has one (first block of
stages 2-4), whatever the widths, so every spec of the family has the same module layout.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .spec import ArchSpec, LayerGroup, ModelFamily, SpecError, module_width, register_family

BLOCKS = (2, 2, 2, 2)
STAGE_WIDTHS = (64, 128, 256, 512)


def _widths() -> dict[str, int]:
    widths = {f"stage{i + 1}": w for i, w in enumerate(STAGE_WIDTHS)}
    for i, (n, w) in enumerate(zip(BLOCKS, STAGE_WIDTHS, strict=True)):
        for j in range(n):
            widths[f"layer{i + 1}.{j}.conv1"] = w
    return widths


WIDTHS = _widths()


class BasicBlock(nn.Module):
    def __init__(self, cin: int, mid: int, cout: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, mid, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if project:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        w = spec.widths
        self.conv1 = nn.Conv2d(spec.input_shape[0], w["stage1"], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(w["stage1"])
        cin = w["stage1"]
        stages: list[nn.Sequential] = []
        for i, n in enumerate(BLOCKS):
            cout = w[f"stage{i + 1}"]
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                project = i > 0 and j == 0
                blocks.append(BasicBlock(cin, w[f"layer{i + 1}.{j}.conv1"], cout, stride, project))
                cin = cout
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.linear = nn.Linear(cin, spec.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        out = F.adaptive_avg_pool2d(out, 1)
        return self.linear(torch.flatten(out, 1))


def read_widths(model: nn.Module) -> dict[str, int]:
    widths: dict[str, int] = {}
    for i, n in enumerate(BLOCKS):
        stage = f"stage{i + 1}"
        widths[stage] = module_width(model, f"layer{i + 1}.0.conv2")
        for j in range(n):
            widths[f"layer{i + 1}.{j}.conv1"] = module_width(model, f"layer{i + 1}.{j}.conv1")
            out = module_width(model, f"layer{i + 1}.{j}.conv2")
            if out != widths[stage]:
                raise SpecError(
                    f"spec_from_model: layer{i + 1}.{j}.conv2 has {out} outputs but its stage "
                    f"has {widths[stage]}: residual widths must agree"
                )
    if module_width(model, "conv1") != widths["stage1"]:
        raise SpecError("spec_from_model: stem conv1 width differs from stage1 width")
    return widths


FAMILY = register_family(
    ModelFamily(
        name="resnet18_cifar",
        builder=ResNet18,
        default_widths=WIDTHS,
        input_shape=(3, 32, 32),
        num_classes=10,
        read_widths=read_widths,
        groups=tuple(
            LayerGroup(f"layer{i + 1}", tuple(f"layer{i + 1}.{j}.conv1" for j in range(n)))
            for i, n in enumerate(BLOCKS)
        ) + (LayerGroup("residual", tuple(f"stage{i + 1}" for i in range(4))),),
        description="ResNet-18 CIFAR variant, 3x32x32 (11.2 M params, 0.56 G MACs)",
    )
)
