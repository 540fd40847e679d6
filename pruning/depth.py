"""Depth: residual blocks removed whole.

A block is *removable* when it is a residual block with an identity shortcut: with every
parameter inside it set to zero it returns its input unchanged (``x + f(x)`` with ``f = 0``;
a ReLU after the addition is fine on the non-negative input it sees). That is checked, not
assumed from class names, on one traced forward pass, so it holds for torchvision, timm and
a user's own blocks alike: a block whose shortcut has a projection (a strided or widening
block), a plain conv block, or a block called twice fails the check and stays. Removing a
block replaces it with ``nn.Identity`` - exact structurally, and no channel bookkeeping is
needed, since its input and output have the same shape.

Which block to remove is read off data: :func:`block_drop_errors` measures, per block, the
relative change of the network's output on calibration batches when that block alone is
skipped (one forward per block and batch, through a hook, no copies). Dropping the blocks of
smallest error first is the block-pruning baseline of the few-shot literature (PRACTISE,
Wang et al. CVPR 2023, drop blocks by how well the rest recovers; here: by the output error
before any recovery, which needs no training).

    blocks = removable_blocks(model, example)
    errs = block_drop_errors(model, calib, blocks)
    thinner = drop_blocks(model, sorted(blocks, key=errs.get)[:2])
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pruning.capture import batch_inputs, model_device, restore_modes, snapshot_modes

__all__ = ["block_drop_errors", "drop_blocks", "dropped_blocks", "inside_blocks", "removable_blocks"]

_RTOL = 1e-5


def _candidates(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules()
            if n and any(True for _ in m.parameters(recurse=True))
            and not isinstance(m, nn.Identity)]


def removable_blocks(model: nn.Module, example: Tensor) -> list[str]:
    """Names of the residual blocks with an identity shortcut (see the module docstring),
    innermost ones only (a stage of removable blocks is not itself listed), in forward order.

    Args:
        model: The network (its modes are restored afterwards).
        example: One input batch (a single tensor) for the traced forward pass.
    """
    seen: dict[str, list[tuple[Tensor, Tensor]]] = {}
    order: list[str] = []
    hooks = []

    def hook(name: str) -> Any:
        def fn(_mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            if name not in seen:
                order.append(name)
            calls = seen.setdefault(name, [])
            if len(args) == 1 and not kwargs and isinstance(args[0], Tensor) \
                    and isinstance(out, Tensor) and out.shape == args[0].shape:
                calls.append((args[0].detach().clone(), out.detach()))
            else:
                calls.append((torch.empty(0), torch.empty(1)))  # not a tensor -> tensor map
        return fn

    modes = snapshot_modes(model)
    model.eval()
    names = _candidates(model)
    try:
        for n in names:
            hooks.append(model.get_submodule(n).register_forward_hook(hook(n), with_kwargs=True))
        with torch.no_grad():
            model(example.to(model_device(model)))
    finally:
        for h in hooks:
            h.remove()
        restore_modes(model, modes)
    passing: list[str] = []
    for n in order:
        calls = seen[n]
        if len(calls) != 1 or calls[0][0].numel() == 0:
            continue  # called twice (shared) or not a same-shape tensor map
        x = calls[0][0]
        block = copy.deepcopy(model.get_submodule(n)).eval()
        with torch.no_grad():
            for p in block.parameters():
                p.zero_()
            try:
                y = block(x)
            except Exception:  # noqa: BLE001  (zeroed weights can break a block's own checks)
                continue
        # relative: activations of deep untrained nets can be tiny (1e-6 in MobileNetV2), so
        # a zeroed layer's 0 must not pass for an identity on them
        scale = float(torch.linalg.vector_norm(x.double()))
        if isinstance(y, Tensor) and y.shape == x.shape and scale > 0 and \
                float(torch.linalg.vector_norm((y - x).double())) <= _RTOL * scale:
            passing.append(n)
    # innermost only: drop a passing module that contains another passing one
    return [n for n in passing
            if not any(o != n and o.startswith(n + ".") for o in passing)]


def drop_blocks(model: nn.Module, names: Sequence[str], *, inplace: bool = False) -> nn.Module:
    """``model`` (a deep copy unless ``inplace``) with each named block replaced by
    ``nn.Identity``. Names must come from :func:`removable_blocks` (not checked here)."""
    out = model if inplace else copy.deepcopy(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = out.get_submodule(parent_name) if parent_name else out
        if not hasattr(parent, child):
            raise ValueError(f"drop_blocks: {name!r} is not a submodule of the model")
        setattr(parent, child, nn.Identity())
    return out


def inside_blocks(name: str, blocks: Iterable[str]) -> bool:
    """Whether module ``name`` is one of ``blocks`` or lies inside one (gone with it)."""
    return any(name == b or name.startswith(b + ".") for b in blocks)


def dropped_blocks(model: nn.Module, blocks: Iterable[str]) -> list[str]:
    """Which of ``blocks`` (names of the unpruned model's removable blocks) are an
    ``nn.Identity`` in ``model`` (removed)."""
    out = []
    for name in blocks:
        try:
            mod = model.get_submodule(name)
        except AttributeError:
            continue
        if isinstance(mod, nn.Identity):
            out.append(name)
    return out


def block_drop_errors(model: nn.Module, loader: Iterable[Any], blocks: Sequence[str], *,
                      max_batches: int | None = None) -> dict[str, float]:
    """Per block: the relative squared error of the network's output when that block alone
    is skipped, ``sum |f(x) - f_-b(x)|^2 / sum |f(x) - mean f(x)|^2`` over the batches."""
    dev = model_device(model)
    modes = snapshot_modes(model)
    model.eval()
    num = dict.fromkeys(blocks, 0.0)
    den = 0.0
    try:
        with torch.no_grad():
            for b, batch in enumerate(loader):
                if max_batches is not None and b >= max_batches:
                    break
                x = batch_inputs(batch).to(dev)
                ref = model(x).float()
                den += float(((ref - ref.mean(0)) ** 2).sum())
                for name in blocks:
                    h = model.get_submodule(name).register_forward_hook(
                        lambda _m, args, _out: args[0])
                    try:
                        num[name] += float(((model(x).float() - ref) ** 2).sum())
                    finally:
                        h.remove()
    finally:
        restore_modes(model, modes)
    return {n: v / den if den > 0 else float("inf") for n, v in num.items()}
