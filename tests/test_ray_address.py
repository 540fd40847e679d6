"""A wrong --ray-address fails at once (exit 2, the address named), before pre-training and
before the study is created; Ray itself would retry for minutes."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from nas.cli import main
from nas.validate import InputError, check_ray_address

CONFIG = {"name": "addr", "model": {"family": "small_cnn"},
          "data": {"name": "synthetic", "num_samples": 64, "input_shape": [1, 8, 8],
                   "num_classes": 4, "val_fraction": 0.25},
          "search": {"backend": "ray", "trials": 1}, "wandb": {"enabled": False}}


def _closed_port() -> int:
    with socket.socket() as s:  # a port nothing listens on (bound, then released)
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_address_exits_2_within_seconds(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump(CONFIG))
    address = f"127.0.0.1:{_closed_port()}"
    t0 = time.perf_counter()
    code = main(["search", "--config", str(cfg), "--out", str(tmp_path / "run"),
                 "--ray-address", address])
    assert code == 2 and time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    assert address in err and "nothing answers" in err
    assert not (tmp_path / "run" / "study.db").exists()
    assert not (tmp_path / "run" / "pretrained").exists()


def test_address_forms() -> None:
    check_ray_address(None)
    check_ray_address("auto")
    with pytest.raises(InputError, match="expected HOST:PORT"):
        check_ray_address("no-port-here")
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        check_ray_address(f"127.0.0.1:{port}")
        check_ray_address(f"ray://127.0.0.1:{port}")
