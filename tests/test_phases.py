"""pruning.phases: a sparsify pass reports its named phases, nested, to a listener and to
torch.profiler; with no listener nothing is recorded."""

from __future__ import annotations

import pytest
import torch

import pruning
import search_spaces as ss
from pruning import phases


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.stack: list[str] = []
        self.parents: set[tuple[str, str]] = set()

    def enter(self, name: str) -> None:
        self.parents.add((self.stack[-1] if self.stack else "", name))
        self.stack.append(name)
        self.events.append(("enter", name))

    def exit(self, name: str) -> None:
        assert self.stack.pop() == name
        self.events.append(("exit", name))


def _calib() -> list[torch.Tensor]:
    return list(torch.randn(16, 1, 8, 8, generator=torch.Generator().manual_seed(0)).split(8))


@pytest.mark.filterwarnings("ignore:entropic_regression:RuntimeWarning")
def test_sparsify_reports_nested_phases() -> None:
    torch.manual_seed(0)
    model = ss.build(ss.default_spec("small_cnn")).eval()
    cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=4)
    with phases.listen(Recorder()) as rec:
        res = pruning.sparsify(model, _calib(), cfg)
    assert rec.stack == []
    names = {n for _, n in rec.events}
    assert set(names) <= set(phases.NAMES)
    assert {"setup", "measure", "unit", "collect", "forward.input", "forward.output", "moments",
            "solve", "solve.evaluate", "refit", "surgery", "report"} <= names
    assert sum(1 for e, n in rec.events if e == "enter" and n == "unit") == len(res.report)
    assert ("unit", "collect") in rec.parents and ("unit", "solve") in rec.parents
    assert ("collect", "moments") in rec.parents and ("solve", "solve.evaluate") in rec.parents


def test_no_listener_after_the_block() -> None:
    with phases.listen(Recorder()) as rec:
        pass
    with phases.phase("unit"):
        pass
    assert rec.events == []


def test_profiler_sees_the_regions() -> None:
    x = torch.randn(64, 4, dtype=torch.float64)
    m = pruning.Moments(4, 1, 2)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        m.update(x, x[:, :2])
    assert "entropic.moments" in {e.key for e in prof.key_averages()}


def test_name_from_keyword_arguments() -> None:
    @phases.timed("forward.{want}")
    def capture(*, want: str) -> str:
        return want

    with phases.listen(Recorder()) as rec:
        assert capture(want="input") == "input"
    assert rec.events == [("enter", "forward.input"), ("exit", "forward.input")]
