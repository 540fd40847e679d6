"""The papers' selections as engine criteria (pruning/criteria.py): greedy forward selection
by reconstruction error (El Halabi et al. 2022) and LASSO on channel scales (He et al. 2017).

Each is checked against a direct computation on the raw samples (explicit least squares, the
closed form of a LASSO), and through the budgeted pass at the entropic allocation's widths."""

from __future__ import annotations

import pytest
import torch
from model_helpers import lenet5

import pruning
from pruning.criteria import greedy_reconstruction, lasso_path_select

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # T < d on tiny calibration


def _moments(X: torch.Tensor, Y: torch.Tensor, C: int, g: int) -> pruning.Moments:
    m = pruning.Moments(num_channels=C, group_size=g, num_outputs=Y.shape[1])
    m.update(X, Y)
    return m


def _explained(X: torch.Tensor, Y: torch.Tensor, chans: list[int], g: int) -> float:
    """Variance of Y explained by the least-squares fit (with intercept) on ``chans``."""
    Xc, Yc = X - X.mean(0), Y - Y.mean(0)
    cols = [c * g + p for c in chans for p in range(g)]
    W = torch.linalg.lstsq(Xc[:, cols], Yc).solution
    return float((Yc ** 2).sum() - ((Yc - Xc[:, cols] @ W) ** 2).sum())


@pytest.mark.parametrize("block", [1, 3, 16])
@pytest.mark.parametrize(("C", "g", "k"), [(7, 3, 4), (9, 2, 9), (12, 1, 12)])
def test_greedy_picks_match_explicit_least_squares_at_every_step(C: int, g: int, k: int,
                                                                 block: int) -> None:
    # block 1 and 3 apply the pending updates (and drop the picked channels) every pick and
    # every third; 16 never does here, reading every pick through the pending updates
    gen = torch.Generator().manual_seed(C)
    n, m = 400, 5
    mix = torch.randn(C * g, C * g, generator=gen, dtype=torch.float64)
    X = torch.randn(n, C * g, generator=gen, dtype=torch.float64) @ mix  # correlated channels
    Y = X @ torch.randn(C * g, m, generator=gen, dtype=torch.float64) \
        + 0.1 * torch.randn(n, m, generator=gen, dtype=torch.float64)
    picked = greedy_reconstruction(_moments(X, Y, C, g), k, ridge=0.0, block=block).tolist()
    assert sorted(picked) == sorted(set(picked)) and len(picked) == k
    chosen: list[int] = []
    for step in range(k):
        gains = {j: _explained(X, Y, chosen + [j], g) for j in range(C) if j not in chosen}
        best = max(gains, key=lambda j: gains[j])
        assert picked[step] == best, (step, picked, gains)
        chosen.append(best)


def test_greedy_finds_the_channels_the_output_is_made_of() -> None:
    gen = torch.Generator().manual_seed(1)
    C, g, n = 10, 2, 600
    X = torch.randn(n, C * g, generator=gen, dtype=torch.float64)
    W = torch.zeros(C * g, 4, dtype=torch.float64)
    for c in (2, 5, 7):
        W[c * g:(c + 1) * g] = torch.randn(g, 4, generator=gen, dtype=torch.float64)
    Y = X @ W + 0.01 * torch.randn(n, 4, generator=gen, dtype=torch.float64)
    assert sorted(greedy_reconstruction(_moments(X, Y, C, g), 3).tolist()) == [2, 5, 7]


def test_lasso_with_orthonormal_contributions_is_soft_thresholding() -> None:
    # A = I: beta_i = soft(b_i, lam), so the k survivors are the k largest |b_i|
    b = torch.tensor([0.3, -2.0, 0.1, 1.5, -0.7, 0.05], dtype=torch.float64)
    keep = lasso_path_select(torch.eye(6, dtype=torch.float64), b, 3)
    assert keep.tolist() == [1, 3, 4]


def test_lasso_keeps_the_channels_that_carry_the_output() -> None:
    gen = torch.Generator().manual_seed(2)
    C, n = 12, 500
    X = torch.randn(n, C, generator=gen, dtype=torch.float64)
    W = torch.randn(1, C, generator=gen, dtype=torch.float64)  # the layer's fixed weights
    true = torch.zeros(C, dtype=torch.float64)
    true[[1, 4, 9]] = torch.tensor([1.0, 0.8, -1.2], dtype=torch.float64)
    Y = (X * W) @ true.unsqueeze(1) + 0.01 * torch.randn(n, 1, generator=gen, dtype=torch.float64)
    Z = X * W  # channel contributions Z_i = X_i W_i
    A = Z.T @ Z / n
    bb = (Z * Y).sum(0) / n
    assert lasso_path_select(A, bb, 3).tolist() == [1, 4, 9]


def test_lasso_ignores_the_scale_of_a_channels_weights() -> None:
    # He et al. constrain |W_i|_F = 1: beta_i, not W_i, carries a channel's scale, so a weak
    # channel whose weights happen to be large (100x) is still left out
    gen = torch.Generator().manual_seed(3)
    C, n, m = 6, 400, 3
    X = torch.randn(n, C, generator=gen, dtype=torch.float64)
    W = torch.randn(m, C, generator=gen, dtype=torch.float64)
    W[:, 0] *= 0.4  # channel 0 reaches the output less than the others
    Y = X @ W.T
    model = torch.nn.Linear(C, m).double()

    def picked(Ws: torch.Tensor) -> list[int]:
        from pruning.criteria import LassoSelection, Unit

        mom = pruning.Moments(num_channels=C, group_size=1, num_outputs=m)
        mom.update(X, Y)
        with torch.no_grad():
            model.weight.copy_(Ws)

        class C1:  # the consumer's fields the criterion reads
            name, module, num_channels = "fc", model, C

        unit = Unit(consumers=[C1()], setting=pruning.RegressionConfig(),  # type: ignore[list-item]
                    moments=[mom], reference=model, channels=torch.arange(C))
        return LassoSelection({"fc": 3}).select(unit).keep.tolist()

    loud = W.clone()
    loud[:, 0] *= 100.0
    assert 0 not in picked(W)
    assert picked(loud) == picked(W)


@pytest.mark.parametrize("selection", [pruning.GreedyReconstruction, pruning.LassoSelection,
                                       pruning.EntropicAt])
def test_budgeted_pass_with_a_paper_selection_keeps_the_allocation(selection: type) -> None:
    torch.manual_seed(0)
    model = lenet5().eval()
    calib = [torch.randn(32, 1, 28, 28) for _ in range(3)]
    cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=8, seed=0)
    ours = pruning.sparsify(model, calib, cfg, target_macs=0.5)
    theirs = pruning.sparsify(model, calib, cfg, target_macs=0.5, selection=selection)
    assert ours.budget is not None and theirs.budget is not None
    assert theirs.budget["widths"] == ours.budget["widths"]
    assert theirs.budget["selection"] == selection.__name__
    assert theirs.after["macs"] == ours.after["macs"]
    # the selection may differ; every kept set has the allocated width
    for r_ours, r_theirs in zip(ours.report, theirs.report, strict=True):
        assert r_ours.layer == r_theirs.layer and r_ours.kept == r_theirs.kept
    with torch.no_grad():
        assert torch.isfinite(theirs.model(calib[0])).all()


def test_a_greedy_plan_allocates_on_greedy_rankings() -> None:
    torch.manual_seed(0)
    model = lenet5().eval()
    calib = [torch.randn(32, 1, 28, 28) for _ in range(3)]
    cfg = pruning.SparsifyConfig(progress=False, calib_positions_per_image=8, seed=0)
    res = pruning.sparsify(model, calib, cfg, target_macs=0.4, plan="greedy",
                           selection=pruning.GreedyReconstruction)
    assert res.budget is not None and res.budget["plan"] == "greedy"
    assert res.budget["within_tolerance"], res.budget["note"]
    # a plan error curve never rises as channels are added back (nested greedy prefixes)
    errors = res.budget["predicted_error"]
    assert all(0.0 <= e <= 1.0 for e in errors.values())
    with pytest.raises(pruning.BudgetError, match="plan"):
        pruning.sparsify(model, calib, cfg, target_macs=0.4, plan="random")  # type: ignore[arg-type]


def test_selection_without_a_target_is_refused() -> None:
    model = lenet5().eval()
    with pytest.raises(ValueError, match="selection= / plan="):
        pruning.sparsify(model, [torch.randn(8, 1, 28, 28)], selection=pruning.LassoSelection)
