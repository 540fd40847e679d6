"""Image data held as one uint8 tensor, augmented a whole batch at a time.

What the fast CIFAR-10 recipes do to keep a small network fed (Jordan 2024, arXiv
2404.00498, section 3): decode the images once, keep them as ``uint8`` in memory (150 MB for
CIFAR-10's 50,000 training images), and augment on tensors per batch - a random translation
(reflection padding, then one crop offset per image) and a horizontal flip - instead of
per-item PIL transforms.

- :func:`decode_image_archive` turns an ImageFolder tree (a directory, or a ``.tar.gz`` of
  one such as the CIFAR-10 JPEG copy) into ``uint8`` tensors once and caches them in a
  safetensors file keyed by the source's size and modification time, so later runs load in
  well under a second.
- :class:`BatchAugmentLoader` is a drop-in for a shuffled training ``DataLoader``: each
  ``iter()`` draws a permutation and the crop offsets from torch's global RNG (which
  ``nas.train.train`` seeds and checkpoints, so a resumed run sees the same batches), and
  flips with *alternating flip* (the paper's section 3.6): image ``i`` is flipped in even
  epochs iff a fixed random bit ``b_i`` is set and in odd epochs iff it is not, so every
  image is seen both ways every two epochs. The trainer tells it the epoch with
  ``set_epoch`` (the same protocol as ``DistributedSampler``).
- :class:`TensorLoader` serves the unaugmented splits (val, test, calibration) as
  normalised float batches in a fixed order.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import TensorDataset

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
FLIPS = ("alternating", "random", "none")


def default_cache_dir() -> Path:
    """``$ENTROPIC_NAS_CACHE`` or ``~/.cache/entropic-nas``."""
    env = os.environ.get("ENTROPIC_NAS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "entropic-nas"


# -- decoding once --------------------------------------------------------------------------


def decode_image_archive(source: str | Path, *, cache_dir: str | Path | None = None
                         ) -> dict[str, tuple[Tensor, Tensor, list[str]]]:
    """Decode an ImageFolder tree with ``train/`` and ``test/`` splits into uint8 tensors.

    Args:
        source: A directory holding ``train/<class>/*`` and ``test/<class>/*`` (or one level
            above such a directory), or a ``.tar``/``.tar.gz`` archive of one.
        cache_dir: Where the decoded tensors are cached (default :func:`default_cache_dir`).

    Returns:
        ``{"train": (images, labels, classes), "test": (...)}`` with images ``(N, C, H, W)``
        uint8 and labels int64; classes sorted by name (ImageFolder's order), images in
        sorted file order within a class.

    Raises:
        FileNotFoundError: ``source`` does not exist or holds no ``train``/``test`` split.
        ValueError: Images of different sizes, or the two splits' classes differ.
    """
    from safetensors.torch import load_file, save_file

    src = Path(source).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"{src}: no such file or directory")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    key = _source_key(src)
    path = cache / f"{_safe_stem(src)}-{key}.u8.safetensors"
    if path.is_file():
        try:
            tensors = load_file(str(path))
            meta = json.loads(path.with_suffix(".json").read_text())
            return {split: (tensors[f"{split}_images"], tensors[f"{split}_labels"],
                            list(meta["classes"])) for split in ("train", "test")}
        except Exception as exc:  # a truncated or foreign cache file: decode again
            log.warning("ignoring unreadable cache %s (%s); decoding again", path, exc)
    t0 = time.perf_counter()
    files = _list_tar(src) if src.is_file() else _list_dir(src)
    out: dict[str, tuple[Tensor, Tensor, list[str]]] = {}
    for split in ("train", "test"):
        entries = files.get(split)
        if not entries:
            raise FileNotFoundError(
                f"{src}: no {split}/<class>/<image> files found (expected an ImageFolder tree "
                "with train/ and test/ splits)")
        out[split] = _decode_split(src, split, entries)
    if out["train"][2] != out["test"][2]:
        raise ValueError(f"{src}: train classes {out['train'][2]} differ from test classes "
                         f"{out['test'][2]}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file({f"{s}_{k}": t for s, (im, lb, _) in out.items()
               for k, t in (("images", im), ("labels", lb))}, str(tmp))
    meta_tmp = tmp.with_suffix(".json.tmp")
    meta_tmp.write_text(json.dumps({"format": CACHE_FORMAT, "source": str(src),
                                    "classes": out["train"][2]}))
    os.replace(meta_tmp, path.with_suffix(".json"))
    os.replace(tmp, path)
    log.info("decoded %d + %d images from %s in %.1f s (cached in %s)", len(out["train"][1]),
             len(out["test"][1]), src, time.perf_counter() - t0, path)
    return out


def _safe_stem(src: Path) -> str:
    name = src.name
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name) or "images"


def _source_key(src: Path) -> str:
    st = src.stat()
    h = hashlib.sha256(f"{CACHE_FORMAT}|{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    if src.is_dir():  # a directory's mtime misses edits below it: fold in the split dirs
        for split in ("train", "test"):
            p = _split_root(src) / split
            if p.is_dir():
                h.update(f"{p.stat().st_mtime_ns}".encode())
    return h.hexdigest()[:16]


def _split_root(src: Path) -> Path:
    if (src / "train").is_dir():
        return src
    nested = sorted(p.parent for p in src.glob("*/train") if (p.parent / "test").is_dir())
    return nested[0] if nested else src


def _classify(rel: Sequence[str]) -> tuple[str, str, str] | None:
    """``(..., split, class, file)`` parts -> (split, class, file) for image files."""
    if len(rel) < 3 or not rel[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    split, cls, name = rel[-3], rel[-2], rel[-1]
    return (split, cls, name) if split in ("train", "test") else None


def _list_dir(src: Path) -> dict[str, list[tuple[str, str, object]]]:
    root = _split_root(src)
    files: dict[str, list[tuple[str, str, object]]] = {}
    for split in ("train", "test"):
        for p in sorted((root / split).glob("*/*")):
            hit = _classify(p.relative_to(root).parts)
            if hit is not None:
                files.setdefault(split, []).append((hit[1], hit[2], p))
    return files


def _list_tar(src: Path) -> dict[str, list[tuple[str, str, object]]]:
    files: dict[str, list[tuple[str, str, object]]] = {}
    with tarfile.open(src) as tar:
        for member in tar:
            if not member.isfile():
                continue
            hit = _classify(Path(member.name).parts)
            if hit is not None:
                data = tar.extractfile(member)
                if data is not None:
                    files.setdefault(hit[0], []).append((hit[1], hit[2], data.read()))
    for entries in files.values():
        entries.sort(key=lambda e: (e[0], e[1]))
    return files


def _decode_split(src: Path, split: str, entries: list[tuple[str, str, object]]
                  ) -> tuple[Tensor, Tensor, list[str]]:
    from PIL import Image

    classes = sorted({cls for cls, _, _ in entries})
    index = {c: i for i, c in enumerate(classes)}
    images: list[Tensor] = []
    labels: list[int] = []
    shape: tuple[int, ...] | None = None
    for cls, name, payload in entries:
        fp = io.BytesIO(payload) if isinstance(payload, bytes) else payload
        with Image.open(fp) as img:  # type: ignore[arg-type]
            arr = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
            w, h = img.size
        t = arr.view(h, w, 3).permute(2, 0, 1)
        if shape is None:
            shape = tuple(t.shape)
        elif tuple(t.shape) != shape:
            raise ValueError(f"{src}: {split}/{cls}/{name} is {tuple(t.shape)}, the first image "
                             f"is {shape}; every image must have the same size")
        images.append(t)
        labels.append(index[cls])
    return torch.stack(images).contiguous(), torch.tensor(labels, dtype=torch.long), classes


# -- loaders --------------------------------------------------------------------------------


def normalize(images: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 ``(N, C, H, W)`` -> float32, scaled to [0, 1] and normalised per channel."""
    return images.float().div_(255.0).sub_(mean.view(1, -1, 1, 1)).div_(std.view(1, -1, 1, 1))


class TensorLoader:
    """Fixed-order batches of normalised images from a uint8 tensor (val, test, calibration)."""

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, *,
                 mean: Sequence[float], std: Sequence[float]) -> None:
        self.images, self.labels = images, labels
        self.batch_size = int(batch_size)
        self.mean = torch.tensor(list(mean), dtype=torch.float32)
        self.std = torch.tensor(list(std), dtype=torch.float32)
        self.dataset = TensorDataset(images, labels)  # for len(loader.dataset)

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for start in range(0, len(self.labels), self.batch_size):
            sl = slice(start, start + self.batch_size)
            yield normalize(self.images[sl], self.mean, self.std), self.labels[sl]


class BatchAugmentLoader(TensorLoader):
    """Shuffled, batch-augmented training batches (translate + alternating flip).

    Args:
        images, labels: The training split, uint8 ``(N, C, H, W)`` and int64.
        batch_size: Images per batch.
        mean, std: Per-channel normalisation.
        translate: Maximum shift in pixels (reflection padding); 0 turns it off.
        flip: ``"alternating"`` (default), ``"random"`` or ``"none"``.
        drop_last: Drop the last incomplete batch (keeps every step's batch statistics alike).
        flip_seed: Seed of the fixed per-image bits of alternating flip.
    """

    def __init__(self, images: Tensor, labels: Tensor, batch_size: int, *,
                 mean: Sequence[float], std: Sequence[float], translate: int = 2,
                 flip: str = "alternating", drop_last: bool = False, flip_seed: int = 0) -> None:
        super().__init__(images, labels, batch_size, mean=mean, std=std)
        if flip not in FLIPS:
            raise ValueError(f"data.flip: {flip!r} is not one of {FLIPS}")
        if translate < 0:
            raise ValueError(f"data.translate: must be >= 0, got {translate}")
        self.translate, self.flip, self.drop_last = int(translate), flip, drop_last
        g = torch.Generator().manual_seed(flip_seed)
        self._flip_bits = torch.rand(len(labels), generator=g) < 0.5
        self.epoch = 0
        # Padded once, so a batch only needs its crops (reflection, as in the paper).
        self._padded = (F.pad(images.float(), (self.translate,) * 4, mode="reflect")
                        .round_().to(torch.uint8) if self.translate else images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        n = len(self.labels)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        perm = torch.randperm(n)
        shifts = (torch.randint(0, 2 * self.translate + 1, (n, 2)) if self.translate
                  else torch.zeros(n, 2, dtype=torch.long))
        if self.flip == "alternating":
            flips = self._flip_bits ^ bool(self.epoch % 2)
        elif self.flip == "random":
            flips = torch.rand(n) < 0.5
        else:
            flips = torch.zeros(n, dtype=torch.bool)
        for b in range(len(self)):
            idx = perm[b * self.batch_size:(b + 1) * self.batch_size]
            x = self._crop(idx, shifts[idx])
            f = flips[idx]
            if f.any():
                x[f] = x[f].flip(-1)
            yield normalize(x, self.mean, self.std), self.labels[idx]

    def _crop(self, idx: Tensor, shifts: Tensor) -> Tensor:
        if not self.translate:
            return self.images[idx].clone()
        h, w = self.images.shape[-2:]
        out = torch.empty((len(idx), *self.images.shape[1:]), dtype=torch.uint8)
        code = shifts[:, 0] * (2 * self.translate + 1) + shifts[:, 1]
        for c in torch.unique(code).tolist():  # one slice per distinct offset (<= 25)
            sel = (code == c).nonzero().flatten()
            dy, dx = divmod(c, 2 * self.translate + 1)
            out[sel] = self._padded[idx[sel], :, dy:dy + h, dx:dx + w]
        return out


__all__ = [
    "FLIPS",
    "BatchAugmentLoader",
    "TensorLoader",
    "decode_image_archive",
    "default_cache_dir",
    "normalize",
]
