"""Model size and cost: parameters, MACs, fp32 memory, latency, sparsity.

Conventions (say which one you report, every time):

- **MACs** are multiply-accumulates of Conv and Linear layers for one input image
  (batch 1); biases, BN, activations and pooling are not counted. **FLOPs = 2 x MACs.**
  fvcore / thop / torchinfo report the same MACs even where they call them FLOPs.
  Grouped and depthwise convolutions count ``C_in / groups`` inputs per output.
- **Memory** (``fp32_mib``) is the size of the whole state dict (parameters *and*
  buffers such as BN running statistics and ``num_batches_tracked``) with every tensor
  counted at 4 bytes per element, in MiB (2**20 bytes).
- **Sparsity** is the share of Conv + Linear weights (biases included) that pruning removed:
  ``sparsity(prunable_params(original), prunable_params(pruned))``.
- **Latency** is the median wall time of one forward pass of a batch, warm-up excluded,
  with batch size, device and thread count recorded next to it.

Example:
    >>> m = measure(model, (1, 28, 28))
    >>> m.params, m.macs, m.flops
    (61706, 416520, 833040)
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def count_params(model: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (each shared parameter counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def prunable_params(model: nn.Module) -> int:
    """Weights and biases of Conv and Linear layers: the count that sparsity refers to."""
    total = 0
    for mod in model.modules():
        if isinstance(mod, (*_CONV_TYPES, nn.Linear)):
            total += mod.weight.numel()
            if mod.bias is not None:
                total += mod.bias.numel()
    return total


def sparsity(params_before: int, params_after: int) -> float:
    """Removed share ``(before - after) / before`` of Conv + Linear weights (biases included).

    Pass :func:`prunable_params` of the original and of the pruned model.
    """
    if params_before <= 0:
        raise ValueError(f"sparsity: params_before must be positive, got {params_before}")
    if params_after < 0:
        raise ValueError(f"sparsity: params_after must be >= 0, got {params_after}")
    return (params_before - params_after) / params_before


def layer_macs(model: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """MACs of every Conv / Linear module for one input of shape ``input_shape`` (no batch).

    Found by one forward pass (batch 1, eval mode, no grad) with forward hooks, so layers
    applied several times are counted each time, and unused layers not at all.
    """
    macs: dict[str, int] = {}

    def hook(name: str) -> Any:
        def fn(mod: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            if isinstance(mod, _CONV_TYPES):
                kernel = 1
                for k in mod.kernel_size:
                    kernel *= int(k)
                per_output = (mod.in_channels // mod.groups) * kernel
            elif isinstance(mod, nn.Linear):  # every output element reads in_features inputs
                per_output = int(mod.in_features)
            else:
                return
            macs[name] = macs.get(name, 0) + int(out.numel()) * per_output

        return fn

    handles = [
        mod.register_forward_hook(hook(name))
        for name, mod in model.named_modules()
        if isinstance(mod, (*_CONV_TYPES, nn.Linear))
    ]
    try:
        with _eval_mode(model), torch.no_grad():
            model(_example_input(model, input_shape, batch_size=1))
    finally:
        for h in handles:
            h.remove()
    return macs


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Total Conv + Linear MACs for one input (``FLOPs = 2 * MACs``); see :func:`layer_macs`."""
    return sum(layer_macs(model, input_shape).values())


def fp32_mib(model: nn.Module) -> float:
    """State-dict size in MiB with every tensor (parameters and buffers) counted as fp32."""
    return sum(t.numel() for t in model.state_dict().values()) * 4 / 2**20


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> dict[str, Any]:
    """Forward-pass time of one batch, in eval mode under ``torch.inference_mode``.

    Args:
        model: The model; copied to ``device`` if it lives elsewhere (left untouched).
        input_shape: ``(C, H, W)`` of one input.
        batch_size: Inputs per timed forward pass.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        warmup: Untimed passes first (allocator, cuDNN autotuning, caches).
        repeats: Timed passes; each on CUDA is bracketed by ``torch.cuda.synchronize``.
        threads: ``torch.set_num_threads`` for the measurement (restored afterwards);
            ``None`` keeps the current setting.

    Returns:
        ``{"median_ms", "iqr_ms", "p25_ms", "p75_ms", "min_ms", "batch_size", "device",
        "threads", "warmup", "repeats"}``; times are per batch.
    """
    if repeats < 1:
        raise ValueError(f"measure_latency: repeats must be >= 1, got {repeats}")
    dev = torch.device(device)
    on_device = model_device(model) == dev or (
        dev.type == "cuda" and dev.index is None and model_device(model).type == "cuda"
    )
    net = model if on_device else copy.deepcopy(model).to(dev)
    x = _example_input(net, input_shape, batch_size=batch_size)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    times: list[float] = []
    try:
        with _eval_mode(net), torch.inference_mode():
            for _ in range(warmup):
                net(x)
            sync()
            for _ in range(repeats):
                t0 = time.perf_counter()
                net(x)
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(old_threads)
    p25, p75 = _quartiles(times)
    return {
        "median_ms": statistics.median(times),
        "iqr_ms": p75 - p25,
        "p25_ms": p25,
        "p75_ms": p75,
        "min_ms": min(times),
        "batch_size": batch_size,
        "device": _device_name(dev),
        "threads": used_threads,
        "warmup": warmup,
        "repeats": repeats,
    }


@dataclass
class ModelMetrics:
    """Size and cost of one model (see the module docstring for the conventions).

    Attributes:
        params: All parameters.
        prunable_params: Conv + Linear weights and biases (the base of ``sparsity``).
        macs: Conv + Linear MACs per image.
        flops: ``2 * macs``.
        fp32_mib: State dict size at 4 bytes per element, MiB.
        input_shape: ``(C, H, W)`` the MACs were counted for.
        latency: :func:`measure_latency`'s dict, or ``None`` when not measured.
    """

    params: int
    prunable_params: int
    macs: int
    flops: int
    fp32_mib: float
    input_shape: tuple[int, ...]
    latency: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        return d


def measure(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    latency: bool = False,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    warmup: int = 10,
    repeats: int = 50,
    threads: int | None = None,
) -> ModelMetrics:
    """Params, MACs, FLOPs, fp32 MiB and (when ``latency=True``) latency of ``model``."""
    macs = count_macs(model, input_shape)
    lat = None
    if latency:
        lat = measure_latency(model, input_shape, batch_size=batch_size, device=device,
                              warmup=warmup, repeats=repeats, threads=threads)
    return ModelMetrics(
        params=count_params(model),
        prunable_params=prunable_params(model),
        macs=macs,
        flops=2 * macs,
        fp32_mib=fp32_mib(model),
        input_shape=tuple(int(v) for v in input_shape),
        latency=lat,
    )


# -- helpers --------------------------------------------------------------------------------


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (or buffer); CPU for an empty model."""
    for param in model.parameters():
        return param.device
    for buf in model.buffers():
        return buf.device
    return torch.device("cpu")


def _example_input(model: nn.Module, input_shape: tuple[int, ...], *,
                   batch_size: int) -> torch.Tensor:
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return torch.zeros((batch_size, *input_shape), dtype=dtype, device=model_device(model))


def _quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def _device_name(dev: torch.device) -> str:
    if dev.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(dev)})"
    return "cpu"


__all__ = [
    "ModelMetrics",
    "count_macs",
    "count_params",
    "fp32_mib",
    "layer_macs",
    "measure",
    "measure_latency",
    "prunable_params",
    "sparsity",
]
