"""Extra calibration views: more regression rows from the same images, no labels.

``Loaders.calib(n, flip=True, shift=s)`` follows each batch with its horizontal mirror image
and copies of both shifted ``s`` pixels four ways (same targets, re-iterable);
``prune.calib_flip`` / ``prune.calib_shift`` pass them to the pass, which then fits every
layer on that many times the rows.
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        shifted = pruning.sparsify(model, loaders.calib(32, 16, flip=True, shift=2), cfg)
    assert all(c.samples == 10 * a.samples for (a, _), c in
               zip(done, (r for r in shifted.report if r.skipped_reason is None), strict=True))
    assert PruneSection(calib_shift=2).calib_shift == 2 and PruneSection().calib_shift == 0


def test_shifted_views_move_the_image_and_reflect_at_the_border() -> None:
    from search_spaces.data import CalibViews

    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    views = CalibViews([(x, torch.zeros(2))], flip=True, shift=1)
    got = [v for v, _ in views]
    assert len(views) == len(got) == 10  # (1 + mirror) x (1 + four shifts)
    torch.testing.assert_close(got[0], x)
    left = got[1]  # content moved right by one column: column j shows column j - 1
    torch.testing.assert_close(left[..., 1:], x[..., :-1])
    torch.testing.assert_close(left[..., 0], x[..., 1])  # reflected border
    right, up, down = got[2], got[3], got[4]
    torch.testing.assert_close(right[..., :-1], x[..., 1:])
    torch.testing.assert_close(up[..., 1:, :], x[..., :-1, :])
    torch.testing.assert_close(down[..., :-1, :], x[..., 1:, :])
    torch.testing.assert_close(got[5], x.flip(-1))
    torch.testing.assert_close(got[6][..., 1:], x.flip(-1)[..., :-1])
    with pytest.raises(ValueError, match=r"calib_shift: 5 pixels is not below"):
        list(CalibViews([x], shift=5))
    with pytest.raises(ValueError, match=r"calib_shift: must be >= 0"):
        CalibViews([x], shift=-1)


def test_only_image_batches_get_views() -> None:
    from search_spaces.data import CalibViews

    with pytest.raises(ValueError, match=r"calib_flip / calib_shift: extra views need image"):
        list(CalibViews([(torch.zeros(4, 10), torch.zeros(4))], flip=True))
