"""Checks and normalisation of what the caller hands to ``sparsify`` / ``prune_to_widths``.

- A one-shot iterator (a generator, ``iter(loader)``) cannot be read twice: the pass needs
  one batch for tracing and then the whole set (once with the activation caches, once per
  layer without). Such an input is read once into a list (only the batches the pass uses,
  ``max_batches``), so no batch is lost to the trace and a generator gives the same result
  as the same batches in a list.
- The calibration batches must fit the model: the first Conv2d / Linear whose input does
  not match is named with the batch shape, before any work, instead of a raw torch error
  from deep inside the trace.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["InputMismatchError", "check_input_fits", "reiterable"]


class InputMismatchError(ValueError):
    """The calibration batches do not fit the model (channel count, features)."""


def reiterable(loader: Iterable[Any], max_batches: int | None) -> Iterable[Any]:
    """``loader`` itself if it can be iterated again; else its (first max_batches) items."""
    if isinstance(loader, Iterator):
        items = loader if max_batches is None else itertools.islice(loader, max_batches)
        return list(items)
    return loader


def _expected(mod: nn.Module) -> tuple[int, int] | None:
    """(dim, size) the module's input must have: channels of a conv, features of a Linear."""
    if isinstance(mod, nn.Conv2d):
        return 1, mod.in_channels
    if isinstance(mod, nn.Linear):
        return -1, mod.in_features
    return None


class _Mismatch(Exception):
    def __init__(self, name: str, dim: int, want: int, got: tuple[int, ...]) -> None:
        super().__init__(name)
        self.name, self.dim, self.want, self.got = name, dim, want, got


def check_input_fits(model: nn.Module, example: Tensor, *, what: str = "calibration batch") -> None:
    """Run one example through ``model``; name the first layer its activations do not fit.

    Raises:
        InputMismatchError: e.g. "calibration batch of shape (1, 1, 28, 28) does not fit the
            model: layer 'conv1' (Conv2d) expects 3 input channels, got 1".
    """
    handles = []

    def make(name: str, mod: nn.Module):
        dim, want = _expected(mod)  # type: ignore[misc]

        def pre(_m: nn.Module, args: tuple[Any, ...]) -> None:
            x = args[0] if args else None
            if isinstance(x, Tensor) and x.dim() >= 2 and x.shape[dim] != want:
                raise _Mismatch(name, dim, want, tuple(x.shape))

        return pre

    for name, mod in model.named_modules():
        if _expected(mod) is not None:
            handles.append(mod.register_forward_pre_hook(make(name, mod)))
    modes = {n: m.training for n, m in model.named_modules()}
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    except _Mismatch as e:
        mod = model.get_submodule(e.name)
        unit = "input channels" if e.dim == 1 else "input features"
        got = e.got[e.dim]
        raise InputMismatchError(
            f"{what} of shape {tuple(example.shape)} does not fit the model: layer "
            f"{e.name!r} ({type(mod).__name__}) expects {e.want} {unit}, got {got} "
            f"(its input has shape {e.got})"
        ) from None
    except RuntimeError as e:
        raise InputMismatchError(
            f"{what} of shape {tuple(example.shape)} does not fit the model: {e}"
        ) from None
    finally:
        for h in handles:
            h.remove()
        for n, m in model.named_modules():
            if n in modes:
                m.train(modes[n])
