"""Typed model builders for tests that reach into a family's layers (``model.conv2.weight``).

``search_spaces.build`` returns a plain ``nn.Module``; these narrow it to the family's class
(checked at run time), so attribute access type-checks without casts.
"""

from __future__ import annotations

from typing import TypeVar

from torch import Tensor, nn

import search_spaces as ss
from search_spaces.lenet import LeNet5
from search_spaces.resnet import ResNet18
from search_spaces.small_cnn import SmallCNN

M = TypeVar("M", bound=nn.Module)


def build_as(cls: type[M], spec: ss.ArchSpec) -> M:
    model = ss.build(spec)
    assert isinstance(model, cls), f"{spec.family} built a {type(model).__name__}, not {cls}"
    return model


def lenet5(spec: ss.ArchSpec | None = None) -> LeNet5:
    return build_as(LeNet5, spec or ss.default_spec("lenet5"))


def small_cnn(spec: ss.ArchSpec | None = None) -> SmallCNN:
    return build_as(SmallCNN, spec or ss.default_spec("small_cnn"))


def resnet18(spec: ss.ArchSpec | None = None) -> ResNet18:
    return build_as(ResNet18, spec or ss.default_spec("resnet18_cifar"))


def running_stats(bn: nn.modules.batchnorm._NormBase) -> tuple[Tensor, Tensor]:
    """``(running_mean, running_var)`` of a BatchNorm that tracks them (the current tensors:
    surgery replaces them, so read them again after pruning)."""
    mean, var = bn.running_mean, bn.running_var
    assert mean is not None and var is not None, "BatchNorm without running statistics"
    return mean, var


def bias(layer: nn.Conv2d | nn.Linear) -> Tensor:
    """The layer's bias (asserted present)."""
    assert layer.bias is not None, f"{layer} has no bias"
    return layer.bias
