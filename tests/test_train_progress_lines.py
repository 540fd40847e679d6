"""A training epoch longer than a minute shows step lines in a non-terminal log too."""

from __future__ import annotations

import logging

import pytest
import torch

from nas import train as train_mod


def test_step_lines_in_a_log_when_an_epoch_runs_long(monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(train_mod._Reporter, "line_every_s", 0.0)  # every step counts as long
    rep = train_mod._Reporter(enabled=True)
    assert rep.progress is None  # pytest's stderr is not a terminal
    with caplog.at_level(logging.INFO, logger="nas.train"):
        rep.start_epoch(1, 3, steps=4)
        for i in range(1, 5):
            rep.step(torch.tensor(2.0 * i), torch.tensor(i), i * 2)
    lines = [r.getMessage() for r in caplog.records if "step" in r.getMessage()]
    # steps 1-3 of 4 (the last step's news is the epoch line)
    assert lines == [f"epoch 1/3  step {i}/4  loss 1.0000 acc 50.00%" for i in (1, 2, 3)]


def test_a_silent_reporter_prints_no_step_line(monkeypatch: pytest.MonkeyPatch,
                                               caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(train_mod._Reporter, "line_every_s", 0.0)
    rep = train_mod._Reporter(enabled=False)
    with caplog.at_level(logging.INFO, logger="nas.train"):
        rep.start_epoch(1, 1, steps=3)
        rep.step(torch.tensor(1.0), torch.tensor(1), 1)
    assert not caplog.records
