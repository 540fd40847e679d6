"""Conformance suite (nas.testing) over the whole registry: every family builds, forwards,
is pruned by every selection criterion, exports (arch.json + weights + ONNX) and rebuilds
with identical outputs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest
import torch

import pruning
import search_spaces
from nas.testing import (
    CRITERIA,
    ConformanceError,
    Criterion,
    calibration_batches,
    check_builds,
    check_criterion,
    check_family,
    small_spec,
)

FAMILIES = search_spaces.list_families()
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


@pytest.mark.parametrize("family", FAMILIES)
def test_default_spec_builds(family: str) -> None:
    check_builds(search_spaces.default_spec(family))


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("criterion", sorted(CRITERIA))
def test_every_criterion_on_every_family(family: str, criterion: str) -> None:
    spec = small_spec(family)
    model = check_builds(spec)
    check_criterion(model, calibration_batches(spec), CRITERIA[criterion])


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_builds_prunes_exports_and_rebuilds(family: str, tmp_path: Path) -> None:
    check_family(family, tmp_path / family)


def test_a_criterion_that_breaks_the_contract_is_named() -> None:
    """The checks fail loudly: a criterion that edits the model it was given is caught."""
    def in_place(model: torch.nn.Module, calib: Sequence[torch.Tensor]) -> pruning.SparsifyResult:
        res = CRITERIA["given_channels"].prune(model, calib)
        with torch.no_grad():
            next(model.parameters()).add_(1.0)
        return res

    spec = small_spec("small_cnn")
    model = check_builds(spec)
    with pytest.raises(ConformanceError, match="criterion 'in_place'.*input model was modified"):
        check_criterion(model, calibration_batches(spec), Criterion("in_place", in_place))
