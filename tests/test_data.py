"""Datasets and splits: determinism, disjointness, shapes, and the offline error."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch

from search_spaces.data import (
    DatasetNotFoundError,
    DataSpec,
    get_loaders,
    split_indices,
)

SHARED_DATA = Path(os.environ.get("ENTROPIC_NAS_SHARED_DATA", "/work/shared/data"))


def _all(loader: torch.utils.data.DataLoader | None) -> tuple[torch.Tensor, torch.Tensor]:
    assert loader is not None
    xs, ys = zip(*loader, strict=True)
    return torch.cat(xs), torch.cat(ys)


def _rows(x: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in x.flatten(1)}


def test_split_indices_deterministic_disjoint_complete() -> None:
    train, val = split_indices(1000, 0.1, seed=3)
    assert (train, val) == split_indices(1000, 0.1, seed=3)
    assert len(val) == 100 and len(train) == 900
    assert not set(train) & set(val)
    assert sorted(train + val) == list(range(1000))
    assert split_indices(1000, 0.1, seed=4)[1] != val
    assert split_indices(10, 0.0, seed=0) == (split_indices(10, 0.0, seed=0)[0], [])
    with pytest.raises(ValueError):
        DataSpec("digits", val_fraction=1.0)


def test_digits_shapes_and_splits() -> None:
    loaders = get_loaders(DataSpec("digits", batch_size=32, eval_batch_size=100))
    assert loaders.input_shape == (1, 8, 8) and loaders.num_classes == 10
    # 1,797 images: fixed 80/20 train/test, then 10 % of train for val
    assert loaders.sizes() == {"train": 1293, "val": 144, "test": 360}
    x, y = next(iter(loaders.train))
    assert x.shape == (32, 1, 8, 8) and x.dtype == torch.float32 and y.dtype == torch.long
    xtr, _ = _all(loaders.calib(loaders.sizes()["train"], 500))
    xval, _ = _all(loaders.val)
    xte, _ = _all(loaders.test)
    assert abs(float(xtr.mean())) < 0.1 and abs(float(xtr.std()) - 1) < 0.1  # normalised
    # the 1,797 digits are pairwise distinct, so row identity checks the splits are disjoint
    assert len(_rows(xtr)) == 1293
    assert not (_rows(xtr) & _rows(xval) or _rows(xtr) & _rows(xte) or _rows(xval) & _rows(xte))
    # the test split does not move with the seed; val does
    other = get_loaders(DataSpec("digits", seed=1))
    assert torch.equal(_all(other.test)[0], xte)
    assert not torch.equal(_all(other.val)[0], xval)


def test_synthetic_shapes_determinism_and_subsets() -> None:
    spec = DataSpec("synthetic", input_shape=(3, 6, 5), num_classes=4, num_samples=400,
                    batch_size=16, train_subset=100, val_subset=20, test_subset=30)
    a, b = get_loaders(spec), get_loaders(spec)
    assert a.input_shape == (3, 6, 5) and a.num_classes == 4
    assert a.sizes() == {"train": 100, "val": 20, "test": 30}
    xa, ya = _all(a.val)
    xb, yb = _all(b.val)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(_all(a.test)[0], _all(b.test)[0])
    calib = _all(a.calib(50, 7))[0]
    assert calib.shape == (50, 3, 6, 5)
    assert torch.equal(calib, _all(b.calib(50))[0])
    # calibration images are training images, never validation ones
    train_rows = _rows(_all(a.calib(100))[0])
    assert _rows(calib) <= train_rows and not (_rows(xa) & train_rows)
    # subsets are nested: the 100-image training subset lies inside the 200-image one
    bigger = get_loaders(DataSpec("synthetic", input_shape=(3, 6, 5), num_classes=4,
                                  num_samples=400, train_subset=200, val_subset=20))
    assert train_rows <= _rows(_all(bigger.calib(200))[0])
    assert torch.equal(_all(bigger.val)[0], xa)  # val does not depend on train_subset
    with pytest.raises(ValueError, match="calib"):
        a.calib(101)


def test_shuffling_follows_the_global_seed() -> None:
    loaders = get_loaders(DataSpec("synthetic", num_samples=200, batch_size=50))
    torch.manual_seed(0)
    first = next(iter(loaders.train))[1]
    torch.manual_seed(0)
    assert torch.equal(first, next(iter(loaders.train))[1])


def test_imagefolder_from_tmp_dir(tmp_path: Path) -> None:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in (("train", 6), ("test", 2)):
        for cls in ("cat", "dog"):
            folder = tmp_path / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                arr = torch.randint(0, 256, (12, 12, 3), generator=gen, dtype=torch.uint8)
                Image.fromarray(arr.numpy()).save(folder / f"{i}.png")
    loaders = get_loaders(DataSpec("imagefolder", root=str(tmp_path), batch_size=4,
                                   val_fraction=0.25))
    assert loaders.input_shape == (3, 12, 12) and loaders.classes == ["cat", "dog"]
    assert loaders.sizes() == {"train": 9, "val": 3, "test": 4}
    x, _ = next(iter(loaders.train))
    assert x.shape == (4, 3, 12, 12)
    with pytest.raises(DatasetNotFoundError, match=r"did you mean `data.root: "):
        get_loaders(DataSpec("imagefolder", root=str(tmp_path.parent)))


def test_cifar10_missing_offline_gives_one_clear_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision

    def offline(self: object) -> None:
        raise URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(DatasetNotFoundError) as info:
        get_loaders(DataSpec("cifar10", root=str(tmp_path)))
    msg = str(info.value)
    assert "CIFAR-10" in msg
    assert str(tmp_path.resolve() / "cifar-10-batches-py") in msg
    assert "data.root" in msg and "download failed" in msg
    assert isinstance(info.value, FileNotFoundError)

    with pytest.raises(DatasetNotFoundError, match="`data.download` is false"):
        get_loaders(DataSpec("cifar10", root=str(tmp_path), download=False))


def test_mnist_missing_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        get_loaders(DataSpec("mnist", root=str(tmp_path), download=False))
    assert str(tmp_path.resolve() / "MNIST" / "raw") in str(info.value)
    assert "../shared/data" in str(info.value)


@pytest.mark.slow
@pytest.mark.realdata
def test_real_mnist_read_in_place() -> None:
    if not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        pytest.skip(f"real MNIST not found under {SHARED_DATA} (set ENTROPIC_NAS_SHARED_DATA)")
    before = sorted(p.name for p in (SHARED_DATA / "MNIST").rglob("*"))
    loaders = get_loaders(DataSpec("mnist", root=str(SHARED_DATA), download=False,
                                   test_subset=1000))
    assert sorted(p.name for p in (SHARED_DATA / "MNIST").rglob("*")) == before
    assert loaders.input_shape == (1, 28, 28) and loaders.num_classes == 10
    assert loaders.sizes() == {"train": 54_000, "val": 6_000, "test": 1_000}
    x, y = next(iter(loaders.train))
    assert x.shape == (128, 1, 28, 28)
    xall = loaders.train.dataset.tensors[0]  # type: ignore[attr-defined]
    assert abs(float(xall.mean())) < 0.02 and abs(float(xall.std()) - 1) < 0.02
    # val and train are disjoint: compare images through a random projection (a hash)
    xval = loaders.val.dataset.tensors[0]  # type: ignore[union-attr]
    proj = torch.randn(28 * 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    train_keys = set((xall.flatten(1).double() @ proj).round(decimals=6).tolist())
    val_keys = set((xval.flatten(1).double() @ proj).round(decimals=6).tolist())
    assert len(val_keys) > 5_990 and len(train_keys) > 53_900  # MNIST has a few duplicates
    assert len(val_keys & train_keys) <= 5
