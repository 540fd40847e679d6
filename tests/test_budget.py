"""Budget-targeted pruning (issue 10 items 1 and 5): targets are hit, bad ones named early."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from torch import nn

import pruning
import search_spaces
from nas.checkpoint import save_checkpoint
from nas.cli import main
from nas.config import PruneSection, RunConfig
from pruning import BudgetError, RegressionConfig, SparsifyConfig
from pruning.budget import TOLERANCE


class _Net(nn.Module):
    """conv-BN-conv-BN-fc: MACs sit in the convs, parameters in the fc."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.fc1 = nn.Linear(24 * 4 * 4, 32)
        self.fc2 = nn.Linear(32, 5)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        x = nn.functional.max_pool2d(self.act(self.bn2(self.conv2(x))), 2)
        return self.fc2(self.act(self.fc1(torch.flatten(x, 1))))


class _Counting:
    """A re-iterable loader that counts the batches it hands out."""

    def __init__(self, batches: list[torch.Tensor]) -> None:
        self.batches, self.served = batches, 0

    def __iter__(self) -> Any:
        for b in self.batches:
            self.served += 1
            yield b


def _data() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return [torch.randn(64, 3, 8, 8, generator=g) for _ in range(10)]


def _cfg(**kw: Any) -> SparsifyConfig:
    return SparsifyConfig(regression=RegressionConfig(eps_L2=0.03), progress=False, **kw)


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    return _Net().eval()


@pytest.mark.parametrize(("kw", "metric"), [({"target_macs": 0.5}, "macs"),
                                            ({"target_macs": 0.25}, "macs"),
                                            ({"target_params": 0.3}, "params")])
def test_the_target_is_hit(net: nn.Module, kw: dict[str, Any], metric: str) -> None:
    res = pruning.sparsify(net, _data(), _cfg(), **kw)
    b = res.budget
    assert b is not None and b["metric"] == metric
    reached = res.after[metric] / res.before[metric]
    assert b["reached_ratio"] == pytest.approx(reached)
    target = next(iter(kw.values()))
    assert b["target_ratio"] == pytest.approx(target)
    step = b["granularity_step_ratio"]
    assert abs(reached - target) <= max(TOLERANCE * target, step), (reached, step)
    assert b["within_tolerance"] == (abs(reached - target) <= TOLERANCE * target)
    assert set(b["seconds"]) == {"plan_pass", "allocation", "final_pass", "total"}


def test_an_absolute_count_is_a_count(net: nn.Module) -> None:
    full = pruning.count_macs(net, (3, 8, 8))
    res = pruning.sparsify(net, _data(), _cfg(), target_macs=float(full // 3))
    assert res.budget is not None
    assert res.budget["target_value"] == full // 3
    assert abs(res.after["macs"] - full // 3) <= TOLERANCE * full / 3 + res.budget["granularity_step"]


def test_allocation_spends_the_macs_budget_where_macs_are(net: nn.Module) -> None:
    # A MACs budget thins the convs (where the MACs are) more than a params budget does.
    macs = pruning.sparsify(net, _data(), _cfg(), target_macs=0.5).budget
    params = pruning.sparsify(net, _data(), _cfg(), target_params=0.5).budget
    assert macs is not None and params is not None
    assert macs["widths"]["conv2"] + macs["widths"]["fc1"] < params["widths"]["conv2"] + params["widths"]["fc1"]
    assert params["reached_ratio"] <= 0.5 * (1 + TOLERANCE)


@pytest.mark.parametrize(("kw", "field"), [
    ({"target_macs": 0.0}, "target_macs"),
    ({"target_params": -3}, "target_params"),
    ({"target_macs": float("nan")}, "target_macs"),
    ({"target_macs": 0.5, "target_params": 0.5}, "target_macs, target_params"),
    ({"budget": pruning.Budget(pruning.MACs(), 0.5), "target_macs": 0.5}, "both given"),
    ({"target_macs": 1234.5}, "whole number"),
])
def test_bad_targets_fail_before_any_data(net: nn.Module, kw: dict[str, Any], field: str) -> None:
    loader = _Counting(_data())
    with pytest.raises(BudgetError, match=field):
        pruning.sparsify(net, loader, _cfg(), **kw)
    assert loader.served == 0


def test_an_unreachable_budget_names_the_field_before_any_pass(net: nn.Module) -> None:
    loader = _Counting(_data())
    with pytest.raises(BudgetError, match=r"target_macs=0.01 is unreachable.*min_channels"):
        pruning.sparsify(net, loader, _cfg(min_channels=8), target_macs=0.01)
    assert loader.served == 1  # the peek at the first batch for tracing, nothing else


def test_the_config_section_validates_targets() -> None:
    assert PruneSection(target_macs=0.5).has_budget
    with pytest.raises(ValueError, match=r"prune.target_macs must be a finite number > 0"):
        PruneSection(target_macs=0)
    assert PruneSection(target_latency_ms=3.0).has_budget  # timed as the latency section says
    with pytest.raises(ValueError, match=r"prune.target_params=12.5: above 1 .* whole number"):
        PruneSection(target_params=12.5)
    with pytest.raises(ValueError, match="one budget target at a time"):
        PruneSection(target_macs=0.5, target_params=0.5)


_CONFIG = {
    "name": "budget",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 400, "input_shape": [1, 8, 8],
             "num_classes": 4, "batch_size": 32, "val_fraction": 0.2, "augment": False},
    "prune": {"calib_images": 300, "calib_batch_size": 64, "calib_positions_per_image": 8},
    "finetune": {"epochs": 0},
}


@pytest.fixture
def cli_run(tmp_path: Path) -> tuple[Path, Path]:
    cfg = tmp_path / "budget.yaml"
    cfg.write_text(yaml.safe_dump(_CONFIG))
    spec = search_spaces.default_spec("small_cnn", num_classes=4)
    torch.manual_seed(0)
    model = search_spaces.build(spec)
    ck = save_checkpoint(tmp_path / "base", model, spec)
    return cfg, Path(ck)


def test_cli_prune_to_a_budget_records_target_and_reached(cli_run: tuple[Path, Path],
                                                          tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    import json

    cfg, ck = cli_run
    out = tmp_path / "out"
    assert main(["prune", "--config", str(cfg), "--checkpoint", str(ck), "--out", str(out),
                 "--set", "prune.target_macs=0.5"]) == 0
    # the summary says what was reached against the target; the table names the budgeted
    # pass and shows no solver gap / iterations for its given-width final pass
    cap = capsys.readouterr()
    said = " ".join((cap.out + cap.err).split())
    assert re.search(r"target_macs=0\.5: macs x0\.\d{4} of the original \(target x0\.5000\), "
                     r"within 2 % of the target", said), said
    report_txt = (out / "report.txt").read_text()
    assert "budgeted pass (prune.target_macs=0.5)" in " ".join(report_txt.split())
    assert "nan" not in report_txt
    summary = json.loads((out / "report.json").read_text())["summary"]
    assert summary["budget"]["target_ratio"] == pytest.approx(0.5)
    assert summary["macs_ratio"] == pytest.approx(summary["budget"]["reached_ratio"])
    assert abs(summary["macs_ratio"] - 0.5) <= max(0.01, summary["budget"]["granularity_step_ratio"])


@pytest.mark.parametrize("setting", ["prune.target_macs=0", "prune.target_latency_ms=-5",
                                     "prune.target_macs=1e-9"])
def test_cli_bad_budget_exits_2(cli_run: tuple[Path, Path], tmp_path: Path, setting: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    cfg, ck = cli_run
    assert main(["prune", "--config", str(cfg), "--checkpoint", str(ck),
                 "--out", str(tmp_path / "o"), "--set", setting]) == 2
    cap = capsys.readouterr()
    assert "prune.target_" in (cap.out + cap.err).replace("\n", "")


def test_a_latency_target_is_measured_on_its_device(net: nn.Module) -> None:
    # Timing is noisy on a shared CPU (a 2-conv net's latency floor is ~0.76 of its full
    # time, but a loaded machine measured the floor at 1.56x the full time once): a target
    # of 5x the full time is reachable through any such noise; check what is recorded.
    full = pruning.measure_latency(net, (3, 8, 8), batch_size=4, threads=1)["median_ms"]
    res = pruning.sparsify(net, _data(), _cfg(), budget=pruning.Budget(
        pruning.Latency("cpu", batch_size=4, threads=1), 5.0 * full))
    b = res.budget
    assert b is not None and b["metric"] == "latency_ms"
    assert (b["device"], b["batch_size"], b["threads"]) == ("cpu", 4, 1)
    assert b["target_value"] == pytest.approx(5.0 * full)
    assert 1 <= b["rounds"] <= 6 and len(b["round_log"]) == b["rounds"]
    assert b["reached"] > 0


def test_search_trials_get_absolute_budgets_and_bounds_are_validated() -> None:
    from nas.config import SearchSection
    from nas.trial import trial_budget

    base = {"macs": 1000, "params": 400}

    def run(**prune: Any) -> RunConfig:
        return RunConfig.model_validate({"name": "b", "model": {"family": "small_cnn"},
                                         "data": {"name": "synthetic"}, "prune": prune})

    assert trial_budget(run(), base) is None
    budget = trial_budget(run(target_macs=0.25), base)
    assert budget is not None and budget.value == 250.0 and budget.currency == pruning.MACs()
    assert budget.field_name == "prune.target_macs"
    budget = trial_budget(run(target_params=123), base)
    assert budget is not None and budget.value == 123 and budget.currency == pruning.Params()
    assert SearchSection(max_params=1e4, max_latency_ms=2.0).max_params == 1e4
    with pytest.raises(ValueError, match="max_params"):
        SearchSection(max_params=0)
