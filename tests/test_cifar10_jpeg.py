"""The real CIFAR-10 JPEG copy (../shared/data) decodes once into the expected tensors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from search_spaces.data import DataSpec, get_loaders

SHARED = Path(os.environ.get("ENTROPIC_NAS_SHARED_DATA", Path(__file__).parents[2] / "shared" / "data"))
ARCHIVE = SHARED / "cifar10-jpeg.tar.gz"

pytestmark = [pytest.mark.slow, pytest.mark.realdata,
              pytest.mark.skipif(not ARCHIVE.is_file(), reason=f"no {ARCHIVE}")]


def test_jpeg_copy_splits_and_batches(tmp_path: Path) -> None:
    spec = DataSpec("cifar10_jpeg", root=str(SHARED), batch_augment=True, batch_size=500,
                    cache_dir=str(tmp_path))
    loaders = get_loaders(spec)
    assert loaders.sizes() == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert loaders.classes[0] == "airplane" and loaders.classes[-1] == "truck"
    x, y = next(iter(loaders.train))
    assert x.shape == (500, 3, 32, 32) and y.shape == (500,)
    assert abs(float(x.mean())) < 0.2 and 0.8 < float(x.std()) < 1.2  # CIFAR-10 normalisation
    test = loaders.test.dataset.tensors[1]  # type: ignore[attr-defined]
    assert test.bincount().tolist() == [1000] * 10
    # The second load reads the cache instead of decoding 60,000 JPEGs again.
    assert len(list(tmp_path.glob("*.safetensors"))) == 1
    again = get_loaders(spec)
    assert again.sizes() == loaders.sizes()
