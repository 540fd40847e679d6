"""A user's own family, registered when this module is imported: what ``model.imports``
names in tests/test_model_imports.py (a real module on the Ray nodes' path)."""

from __future__ import annotations

from torch import nn

from search_spaces.spec import ModelFamily, read_widths_by_name, register_family

WIDTHS = {"conv1": 8, "conv2": 12}


class Tiny(nn.Module):
    def __init__(self, spec):
        super().__init__()
        w, (c, _, _) = spec.widths, spec.input_shape
        self.conv1 = nn.Conv2d(c, w["conv1"], 3, padding=1)
        self.bn1 = nn.BatchNorm2d(w["conv1"])
        self.conv2 = nn.Conv2d(w["conv1"], w["conv2"], 3, padding=1)
        self.bn2 = nn.BatchNorm2d(w["conv2"])
        self.head = nn.Linear(w["conv2"], spec.num_classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x)).relu()
        x = self.bn2(self.conv2(x)).relu()
        return self.head(x.mean((2, 3)))


register_family(ModelFamily(name="users_tiny", builder=Tiny, default_widths=WIDTHS,
                            input_shape=(3, 8, 8), num_classes=4,
                            read_widths=read_widths_by_name(list(WIDTHS))))
