"""Checkpoints: round trip with buffers, corrupt and truncated files, mismatched specs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

import search_spaces as ss
from nas.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint, save_checkpoint


def _trained_small_cnn(spec: ss.ArchSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    model = ss.build(spec)
    model.train()
    with torch.no_grad():  # moves BN running statistics and num_batches_tracked
        for _ in range(3):
            model(torch.randn(16, *spec.input_shape))
    model.eval()
    return model


@dataclass
class _Cfg:
    lr: float = 0.1
    milestones: tuple[int, ...] = (3, 6)


def test_round_trip_keeps_weights_buffers_spec_and_metadata(tmp_path: Path) -> None:
    spec = ss.default_spec("small_cnn").with_widths({"conv2": 7, "fc1": 9})
    model = _trained_small_cnn(spec)
    weights = save_checkpoint(tmp_path / "best", model, spec, config=_Cfg(),
                              metrics={"val_acc": 0.5})
    assert weights == tmp_path / "best.safetensors"
    assert (tmp_path / "best.json").is_file()
    assert not list(tmp_path.glob(".*tmp*")), "temporary files left behind"

    ckpt = load_checkpoint(tmp_path / "best")
    assert ckpt.spec == spec
    assert ckpt.config == {"lr": 0.1, "milestones": [3, 6]}
    assert ckpt.metrics == {"val_acc": 0.5}
    assert ckpt.extra_state is None
    assert {"torch", "torchvision", "entropic-nas"} <= set(ckpt.meta["versions"])
    assert ckpt.meta["created"]
    saved, loaded = model.state_dict(), ckpt.model.state_dict()
    assert saved.keys() == loaded.keys()
    for key, value in saved.items():
        assert torch.equal(value, loaded[key]), key
    assert int(loaded["bn1.num_batches_tracked"]) == 3
    assert loaded["bn1.num_batches_tracked"].dtype == torch.long
    x = torch.randn(4, *spec.input_shape)
    ckpt.model.eval()
    assert torch.equal(model(x), ckpt.model(x))
    # the same checkpoint through each accepted path form
    for form in (tmp_path / "best.safetensors", tmp_path / "best.json"):
        assert load_checkpoint(form).spec == spec


def test_directory_form_and_extra_state(tmp_path: Path) -> None:
    spec = ss.default_spec("lenet5")
    model = ss.build(spec)
    state = {"epoch": 3, "momentum": [torch.ones(2)], "rng": torch.get_rng_state()}
    save_checkpoint(tmp_path, model, spec, extra_state=state)
    assert checkpoint_paths(tmp_path)[0] == tmp_path / "model.safetensors"
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.extra_state is not None and ckpt.extra_state["epoch"] == 3
    assert torch.equal(ckpt.extra_state["momentum"][0], torch.ones(2))
    # saving again without extra_state must not leave the old resume state paired with it
    save_checkpoint(tmp_path, model, spec)
    assert not (tmp_path / "model.state.pt").exists()
    assert load_checkpoint(tmp_path).extra_state is None


def test_weights_are_safetensors_not_pickle(tmp_path: Path) -> None:
    spec = ss.default_spec("lenet5")
    weights = save_checkpoint(tmp_path / "m", ss.build(spec), spec)
    header_len = int.from_bytes(weights.read_bytes()[:8], "little")
    header = json.loads(weights.read_bytes()[8 : 8 + header_len])
    assert "conv1.weight" in header
    assert json.loads(header["__metadata__"]["arch_spec"])["family"] == "lenet5"


def test_missing_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="sidecar not found"):
        load_checkpoint(tmp_path / "nothing")
    spec = ss.default_spec("lenet5")
    weights = save_checkpoint(tmp_path / "m", ss.build(spec), spec)
    weights.unlink()
    with pytest.raises(CheckpointError, match=r"m\.safetensors: weights file not found"):
        load_checkpoint(tmp_path / "m")


def test_truncated_and_corrupt_weights(tmp_path: Path) -> None:
    spec = ss.default_spec("lenet5")
    weights = save_checkpoint(tmp_path / "m", ss.build(spec), spec)
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_checkpoint(tmp_path / "m")
    with pytest.raises(CheckpointError, match=r"m\.safetensors: cannot read safetensors"):
        load_checkpoint(tmp_path / "m", verify=False)
    weights.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        load_checkpoint(tmp_path / "m", verify=False)


def test_corrupt_sidecar(tmp_path: Path) -> None:
    spec = ss.default_spec("lenet5")
    save_checkpoint(tmp_path / "m", ss.build(spec), spec)
    (tmp_path / "m.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"m\.json: not a valid checkpoint sidecar"):
        load_checkpoint(tmp_path / "m")


def test_spec_mismatch_names_the_tensor(tmp_path: Path) -> None:
    spec = ss.default_spec("lenet5")
    save_checkpoint(tmp_path / "m", ss.build(spec), spec)
    # tamper the sidecar's spec: conv2 now 12 wide, the weights still have 16
    meta = json.loads((tmp_path / "m.json").read_text())
    meta["arch_spec"]["widths"]["conv2"] = 12
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"'conv2\.weight' has shape \(16, 6, 5, 5\)"):
        load_checkpoint(tmp_path / "m")
    # loading into an explicit model of another width: same message shape
    other = ss.build(spec.with_widths({"fc1": 100}))
    meta["arch_spec"]["widths"]["conv2"] = 16
    (tmp_path / "m.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"'fc1\.weight'.*layer 'fc1'"):
        load_checkpoint(tmp_path / "m", model=other)


def test_missing_and_unexpected_tensors(tmp_path: Path) -> None:
    spec = ss.default_spec("lenet5")
    save_checkpoint(tmp_path / "m", ss.build(spec), spec)
    with pytest.raises(CheckpointError, match=r"missing tensor\(s\).*unexpected tensor\(s\)"):
        load_checkpoint(tmp_path / "m", model=ss.build(ss.default_spec("small_cnn")))


def test_model_without_spec_needs_model_argument(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    save_checkpoint(tmp_path / "m", net, None)
    with pytest.raises(CheckpointError, match="no arch_spec saved"):
        load_checkpoint(tmp_path / "m")
    fresh = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    ckpt = load_checkpoint(tmp_path / "m", model=fresh)
    assert ckpt.spec is None
    assert torch.equal(ckpt.model.state_dict()["0.weight"], net.state_dict()["0.weight"])


def test_a_refit_intercept_on_a_biasless_layer_loads_into_a_fresh_build(tmp_path) -> None:
    """The refit adds a bias to a consumer with neither bias nor BatchNorm (DenseNet's growth
    convs); the rebuilt model takes it instead of refusing the weights."""
    from torch import nn

    from nas.checkpoint import load_weights_strict

    fresh = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.ReLU(), nn.Conv2d(4, 2, 1, bias=False))
    tensors = {k: v.clone() for k, v in fresh.state_dict().items()}
    tensors["2.bias"] = torch.tensor([0.5, -1.0])
    load_weights_strict(fresh, tensors)
    assert torch.equal(fresh[2].state_dict()["bias"], torch.tensor([0.5, -1.0]))
    with pytest.raises(CheckpointError, match="unexpected"):
        load_weights_strict(fresh, {**tensors, "0.nope": torch.zeros(1)})


def test_non_finite_weights_are_never_loaded_or_exported(tmp_path: Path) -> None:
    from nas.export import export_trial
    from nas.search_types import TrialRecord

    spec = ss.default_spec("lenet5")
    model = ss.build(spec)
    with torch.no_grad():
        model.state_dict()["conv1.weight"].fill_(float("nan"))
    save_checkpoint(tmp_path / "bad", model, spec)  # its checksum matches its (NaN) contents
    with pytest.raises(CheckpointError, match=r"non-finite values .*conv1.weight"):
        load_checkpoint(tmp_path / "bad")
    record = TrialRecord(0, "COMPLETE", {"accuracy": 0.1}, {}, {})
    with pytest.raises(CheckpointError, match="non-finite"):
        export_trial(record, tmp_path / "export", load_model=lambda _r: (model, spec))
    assert not (tmp_path / "export" / "weights.safetensors").exists()


def test_checkpoints_are_readable_by_the_group_and_others(tmp_path: Path) -> None:
    """Written with the umask's mode, not the 0600 of a private temporary file."""
    import os
    import stat

    old = os.umask(0o022)
    try:
        spec = ss.default_spec("lenet5")
        weights = save_checkpoint(tmp_path / "ck", ss.build(spec), spec)
    finally:
        os.umask(old)
    assert stat.S_IMODE(weights.stat().st_mode) == 0o644
