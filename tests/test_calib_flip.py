"""Mirrored calibration batches: twice the regression rows from the same images, no labels.

``Loaders.calib(n, flip=True)`` follows each batch with its horizontal mirror image (same
targets, re-iterable); ``prune.calib_flip`` passes it to the pass, which then fits every layer
on twice the rows.
"""

from __future__ import annotations

import warnings

import pytest
import torch

import pruning
import search_spaces as ss
from nas.config import PruneSection
from search_spaces.data import DataSpec, get_loaders


def test_each_batch_is_followed_by_its_mirror_image() -> None:
    loaders = get_loaders(DataSpec("synthetic", num_samples=200, input_shape=(3, 8, 8),
                                   num_classes=4, batch_size=32, val_fraction=0.2))
    plain = list(loaders.calib(64, 16))
    mirrored = loaders.calib(64, 16, flip=True)
    assert len(mirrored) == 2 * len(plain)
    for _ in range(2):  # re-iterable: a pass reads its loader more than once
        got = list(mirrored)
        assert len(got) == 2 * len(plain)
        for i, (x, y) in enumerate(plain):
            torch.testing.assert_close(got[2 * i][0], x)
            torch.testing.assert_close(got[2 * i + 1][0], x.flip(-1))
            assert torch.equal(got[2 * i + 1][1], y)


def test_the_pass_fits_on_twice_the_rows() -> None:
    loaders = get_loaders(DataSpec("synthetic", num_samples=200, input_shape=(3, 32, 32),
                                   num_classes=4, batch_size=32, val_fraction=0.2))
    torch.manual_seed(0)
    spec = ss.default_spec("vgg16_cifar", input_shape=(3, 32, 32), num_classes=4).scaled(0.0625)
    model = ss.build(spec).eval()
    cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=2,
                                 heldout_fraction=0.0, regression=pruning.RegressionConfig(eps_L2=0.3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        plain = pruning.sparsify(model, loaders.calib(32, 16), cfg)
        flipped = pruning.sparsify(model, loaders.calib(32, 16, flip=True), cfg)
    done = [(a, b) for a, b in zip(plain.report, flipped.report, strict=True)
            if a.skipped_reason is None]
    assert done
    assert all(b.samples == 2 * a.samples for a, b in done)
    assert PruneSection(calib_flip=True).calib_flip and not PruneSection().calib_flip


def test_only_image_batches_are_mirrored() -> None:
    from search_spaces.data import MirroredBatches

    with pytest.raises(ValueError, match=r"calib_flip: mirror images need image batches"):
        list(MirroredBatches([(torch.zeros(4, 10), torch.zeros(4))]))
