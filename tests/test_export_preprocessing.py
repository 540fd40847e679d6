"""The export records its input preprocessing (arch.json, model card, ONNX metadata), and the
ONNX file run in onnxruntime on inputs normalised by that record matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

import search_spaces as ss
from nas.config import DataSection
from nas.export import export_trial, normalise, preprocessing_for
from nas.search_types import Objective, TrialRecord


def test_onnx_on_normalised_raw_pixels_matches_pytorch(tmp_path: Path) -> None:
    import onnxruntime as ort

    torch.manual_seed(0)
    spec = ss.default_spec("small_cnn").with_widths({"conv1": 4, "conv2": 6, "conv3": 8,
                                                    "fc1": 12})
    model = ss.build(spec).eval()
    pre = preprocessing_for(DataSection(name="digits"))
    assert pre["layout"] == "NCHW" and pre["scale"] == 1 / 16 and len(pre["mean"]) == 1
    rec = TrialRecord(3, "COMPLETE", {"accuracy": 0.9, "macs": 1e4}, {}, {})
    objs = [Objective("accuracy", "maximize"), Objective("macs", "minimize")]
    res = export_trial(rec, tmp_path, load_model=lambda r: (model, spec), objectives=objs,
                       preprocessing=pre)
    assert res.onnx is not None, res.onnx_error

    arch = json.loads((tmp_path / "arch.json").read_text())
    assert arch["meta"]["preprocessing"] == pre
    assert ss.ArchSpec.load(tmp_path / "arch.json").meta["preprocessing"]["std"] == pre["std"]
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert "## Input preprocessing" in card and str(pre["mean"]) in card

    sess = ort.InferenceSession(str(res.onnx), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    recorded = json.loads(meta["preprocessing"])
    assert recorded == pre and meta["layout"] == "NCHW"

    pixels = np.random.default_rng(0).integers(0, 17, size=(5, 1, 8, 8))  # raw digits 0..16
    x = normalise(pixels, recorded)
    expected = ((torch.as_tensor(pixels, dtype=torch.float32) / 16 - pre["mean"][0])
                / pre["std"][0])
    assert np.allclose(x, expected.numpy(), atol=1e-6)
    got = sess.run(None, {"input": x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == (5, 10) and np.allclose(got, want, atol=1e-4)


def test_rgb_and_mnist_recipes() -> None:
    cifar = preprocessing_for(DataSection(name="cifar10"))
    assert cifar["channels"] == "RGB" and len(cifar["mean"]) == 3 and cifar["scale"] == 1 / 255
    assert preprocessing_for(DataSection(name="mnist"))["mean"] == [0.1307]
    assert preprocessing_for(DataSection(name="synthetic"))["mean"] is None


def test_every_dataset_the_project_reads_has_a_known_preprocessing() -> None:
    """cifar10_jpeg (the fast family's offline copy) normalises as CIFAR-10 does; no dataset
    the loaders accept is exported as 'unknown'."""
    from types import SimpleNamespace

    from nas.export import preprocessing_for
    from search_spaces.data import DATASETS

    for name in DATASETS:
        pre = preprocessing_for(SimpleNamespace(name=name, mean=None, std=None, image_size=None))
        assert "unknown" not in pre["formula"], name
        assert "scale" in pre, name
    jpeg = preprocessing_for(SimpleNamespace(name="cifar10_jpeg", mean=None, std=None))
    assert jpeg == preprocessing_for(SimpleNamespace(name="cifar10", mean=None, std=None)) | {
        "dataset": "cifar10_jpeg"}
