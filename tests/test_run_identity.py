"""A run directory belongs to one config: a second config on an existing --out is refused
(exit 2, the differing fields named) before anything there is overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nas.cli import main
from nas.config import RunConfig
from nas.search import absolute_paths

CONFIG = {"name": "ident", "model": {"family": "small_cnn"},
          "data": {"name": "synthetic", "num_samples": 64, "input_shape": [1, 8, 8],
                   "num_classes": 4, "val_fraction": 0.25},
          "train": {"epochs": 1}, "search": {"trials": 1}, "wandb": {"enabled": False}}


def test_another_config_on_an_existing_run_is_refused(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    first = absolute_paths(RunConfig.model_validate(CONFIG)).to_yaml()
    (out / "config.yaml").write_text(first)  # what the first run wrote
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**CONFIG, "train": {"epochs": 3},
                                     "model": {"family": "lenet5"}}))
    assert main(["search", "--config", str(other), "--out", str(out), "--resume"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "holds a run of another config" in err and "model, train" in err
    assert (out / "config.yaml").read_text() == first  # untouched
    assert not (out / "pretrained").exists()


def test_a_damaged_base_model_with_trials_stops_the_resume(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import search_spaces as ss
    from nas.checkpoint import save_checkpoint

    cfg = absolute_paths(RunConfig.model_validate(CONFIG))
    out = tmp_path / "run"
    (out / "trials" / "0").mkdir(parents=True)
    (out / "config.yaml").write_text(cfg.to_yaml())
    spec = ss.default_spec("small_cnn", num_classes=4, input_shape=(1, 8, 8))
    weights = save_checkpoint(out / "pretrained" / "model", ss.build(spec), spec)
    raw = bytearray(weights.read_bytes())
    raw[-8:] = b"\x00" * 8  # damaged after its checksum was written
    weights.write_bytes(bytes(raw))
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    assert main(["search", "--config", str(path), "--out", str(out), "--resume"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "pre-trained model is damaged" in err and "trials were made from it" in err


def test_a_run_written_before_a_field_existed_is_the_same_run(tmp_path: Path) -> None:
    """A config.yaml from an older version lacks the fields added since: they read as their
    defaults, so the run resumes; a field the dump holds is still compared as written."""
    from nas.validate import InputError, check_run_identity

    cfg = absolute_paths(RunConfig.model_validate(CONFIG))
    old = yaml.safe_load(cfg.to_yaml())
    del old["prune"]["calib_shift"], old["recovery"]["loss"]  # added after the run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    check_run_identity(cfg, tmp_path)
    old["prune"]["calib_flip"] = True  # written: another run
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(old))
    with pytest.raises(InputError, match="differs in prune"):
        check_run_identity(cfg, tmp_path)
