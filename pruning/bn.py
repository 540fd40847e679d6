"""BatchNorm recalibration: re-estimate running statistics after channels were removed.

Removing channels upstream (and refitting a layer's weights) changes the distribution of
every later BatchNorm's input, so the running mean / variance the network was trained with
no longer fit. :func:`recalibrate_batchnorm` re-estimates them on calibration data; the pass
calls it once after the last layer (``SparsifyConfig.recalibrate_bn``).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from pruning.capture import iter_inputs, model_device, restore_modes, snapshot_modes
from pruning.phases import timed

__all__ = ["recalibrate_batchnorm"]


@timed("bn_recalibration")
def recalibrate_batchnorm(
    model: nn.Module,
    loader: Iterable,
    *,
    device: torch.device | str | None = None,
    max_batches: int | None = None,
) -> int:
    """Re-estimate every BatchNorm's running mean/var on ``loader`` (in place).

    Statistics are reset and accumulated as a cumulative average (``momentum=None``), with
    only the BatchNorms in train mode (dropout etc. stay in eval) and no gradients.

    Returns:
        The number of BatchNorm layers recalibrated.
    """
    bns = [m for m in model.modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return 0
    dev = torch.device(device) if device is not None else model_device(model)
    modes = snapshot_modes(model)
    momenta = [bn.momentum for bn in bns]
    try:
        model.eval()
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        with torch.no_grad():
            for x in iter_inputs(loader, dev, max_batches):
                model(x)
    finally:
        for bn, mom in zip(bns, momenta, strict=True):
            bn.momentum = mom
        restore_modes(model, modes)
    return len(bns)

