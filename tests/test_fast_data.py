"""Decoding an image archive once into cached uint8 tensors, and batch augmentation."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
import torch

from search_spaces.data import DataSpec, get_loaders
from search_spaces.fast_data import BatchAugmentLoader, TensorLoader, decode_image_archive


def _png(t: torch.Tensor) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(t.permute(1, 2, 0).numpy()).save(buf, format="PNG")  # lossless
    return buf.getvalue()


def _images(n: int, seed: int, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)


def _make_tree(root: Path, classes: tuple[str, ...] = ("cat", "dog")) -> dict[str, torch.Tensor]:
    made = {}
    for split, n in (("train", 3), ("test", 2)):
        imgs = _images(n * len(classes), seed=len(split))
        made[split] = imgs
        for c, cls in enumerate(classes):
            d = root / "tiny" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                (d / f"{i:04d}.png").write_bytes(_png(imgs[c * n + i]))
    return made


def test_directory_and_tarball_decode_to_the_same_tensors(tmp_path: Path) -> None:
    made = _make_tree(tmp_path / "src")
    tar = tmp_path / "tiny.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(tmp_path / "src" / "tiny", arcname="tiny")
    from_dir = decode_image_archive(tmp_path / "src", cache_dir=tmp_path / "cache")
    from_tar = decode_image_archive(tar, cache_dir=tmp_path / "cache")
    for split in ("train", "test"):
        images, labels, classes = from_tar[split]
        assert classes == ["cat", "dog"]
        assert torch.equal(images, made[split])  # sorted class, then file order
        assert labels.tolist() == [0] * (len(labels) // 2) + [1] * (len(labels) // 2)
        assert torch.equal(from_dir[split][0], images)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


def test_cache_is_reused_and_refreshed_when_the_source_changes(tmp_path: Path) -> None:
    _make_tree(tmp_path / "src")
    tar = tmp_path / "tiny.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(tmp_path / "src" / "tiny", arcname="tiny")
    first = decode_image_archive(tar, cache_dir=tmp_path / "cache")
    cached = list((tmp_path / "cache").glob("*.safetensors"))
    again = decode_image_archive(tar, cache_dir=tmp_path / "cache")
    assert torch.equal(first["train"][0], again["train"][0])
    assert list((tmp_path / "cache").glob("*.safetensors")) == cached
    cached[0].write_bytes(b"corrupt")  # a damaged cache is decoded again, not trusted
    assert torch.equal(decode_image_archive(tar, cache_dir=tmp_path / "cache")["train"][0],
                       first["train"][0])


def test_mixed_image_sizes_are_named(tmp_path: Path) -> None:
    _make_tree(tmp_path / "src")
    (tmp_path / "src" / "tiny" / "train" / "cat" / "9999.png").write_bytes(_png(_images(1, 0, 6)[0]))
    with pytest.raises(ValueError, match="train/cat/9999.png"):
        decode_image_archive(tmp_path / "src", cache_dir=tmp_path / "cache")


def test_missing_split_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="train"):
        decode_image_archive(tmp_path / "empty", cache_dir=tmp_path / "cache")


def _loader(n: int = 8, **kw) -> BatchAugmentLoader:
    return BatchAugmentLoader(_images(n, 3), torch.arange(n), 4, mean=(0.0,) * 3,
                              std=(1.0,) * 3, **kw)


def _raw(x: torch.Tensor) -> torch.Tensor:
    return (x * 255).round().to(torch.uint8)


def test_alternating_flip_shows_each_image_both_ways_in_two_epochs() -> None:
    loader = _loader(translate=0)
    seen: dict[int, list[bool]] = {}
    for epoch in (0, 1):
        loader.set_epoch(epoch)
        for x, y in loader:
            for img, label in zip(_raw(x), y.tolist(), strict=True):
                orig = loader.images[label]
                assert torch.equal(img, orig) or torch.equal(img, orig.flip(-1))
                seen.setdefault(label, []).append(not torch.equal(img, orig))
    assert all(sorted(flags) == [False, True] for flags in seen.values())


def test_translation_is_a_window_of_the_reflection_padded_image() -> None:
    loader = _loader(translate=2, flip="none")
    torch.manual_seed(0)
    padded = torch.nn.functional.pad(loader.images.float(), (2,) * 4, mode="reflect")
    for x, y in loader:
        for img, label in zip(_raw(x), y.tolist(), strict=True):
            windows = [padded[label, :, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
            assert any(torch.equal(img.float(), w) for w in windows)


def test_batches_follow_the_global_rng_and_cover_the_split() -> None:
    loader = _loader(n=10)
    torch.manual_seed(5)
    a = [(x.clone(), y.clone()) for x, y in loader]
    torch.manual_seed(5)
    b = list(loader)
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert sorted(torch.cat([y for _, y in a]).tolist()) == list(range(10))
    assert len(loader) == 3 and len(_loader(n=10, drop_last=True)) == 2


def test_tensor_loader_normalises_in_order() -> None:
    images = _images(5, 1)
    loader = TensorLoader(images, torch.arange(5), 2, mean=(0.5,) * 3, std=(0.25,) * 3)
    x = torch.cat([b for b, _ in loader])
    assert torch.allclose(x, (images.float() / 255 - 0.5) / 0.25)
    assert len(loader) == 3


def test_batch_augment_is_refused_where_images_are_not_uint8_tensors() -> None:
    with pytest.raises(ValueError, match="data.batch_augment"):
        DataSpec("mnist", batch_augment=True)
    with pytest.raises(ValueError, match="data.flip"):
        DataSpec("cifar10_jpeg", flip="sideways")


def test_cifar10_jpeg_missing_names_the_folder(tmp_path: Path) -> None:
    from search_spaces.data import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="cifar10-jpeg.tar.gz"):
        get_loaders(DataSpec("cifar10_jpeg", root=str(tmp_path)))
