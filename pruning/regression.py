"""Sparse entropic regression of one layer on its second moments (spec sections 2-4).

The layer ``y = q0 + Q x`` is refitted as ``y_hat = lambda0 + Lambda D(w) x`` with a
probability vector ``w`` over the C input channels (``D(w)`` repeats ``w_c`` over channel c's
k columns) by minimising

    L(w, Lambda, lambda0) = 1/(T m) sum_t ||y_t - lambda0 - Lambda D(w) x_t||^2
                          + eps_L2/(d m) ||Lambda||_F^2 + eps_E sum_c w_c ln w_c.

With ``Q_hat_c = Lambda_c w_c`` the L2 term reads ``sum_c ||Q_hat_c||^2 / w_c^2``: an adaptive
ridge whose minimum over the simplex is the group quasi-norm ``(sum_c ||Q_hat_c||^(2/3))^3``,
which switches whole channels off. Channels with large ``w`` are kept, the others removed, and
the kept channels' weights are refitted by least squares.

Everything runs on the float64 moments of ``pruning.moments.Moments`` and on their device.

Reference: Barisin & Horenko, "Towards Generalized Entropic Sparsification for Convolutional
Neural Networks", Neural Computation 2025 (arXiv:2404.04734); Horenko et al., PNAS 2023
(SPARTAn) for the sparse entropic regression it builds on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from pruning.moments import Moments, feature_columns
from pruning.phases import timed

__all__ = [
    "cholesky_psd",
    "RegressionConfig",
    "check_setting",
    "RegressionResult",
    "entropic_regression",
    "envelope_gradient",
    "lambda_step",
    "objective",
    "reconstruction_error",
    "refit",
    "refit_on_heldout",
    "select_channels",
]

# Relative ridges the held-out choice of the refit tries (refit_on_heldout).
REFIT_RIDGES = (1e-6, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)

# Relative ridge added to the refit when there are fewer samples than features.
_UNDERDETERMINED_RIDGE = 1e-3
# Armijo constant for the backtracking line searches.
_ARMIJO = 1e-4
# CPU solves up to this many features run single-threaded (see _small_problem_threads).
_SINGLE_THREAD_MAX_D = 1536
# The envelope solver shrinks its active set only once this share of it is below the
# threshold (each shrink costs one extra factorisation; on a VGG-16 layer 11 of 45
# evaluations were such re-factorisations when channels left a few at a time).
_DROP_MIN_FRACTION = 0.05
# Channels whose pooled std is below this fraction of the largest one count as constant.
_CONSTANT_CHANNEL = 1e-12


def _finite(v: float) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# The one rule per layer setting: (check, what it requires). The YAML layer (nas.config)
# applies the same rules through :func:`check_setting`, naming its own field.
_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    # The entropy term spans |eps_E| ln C over the simplex while the standardised fit term
    # (Y scaled to mean variance 1) is O(1): beyond |eps_E| = 1 the entropy alone decides
    # w (all channels kept for eps_E > 0, a collapse onto min_channels for eps_E < 0).
    "eps_E": (lambda v: _finite(v) and -1.0 <= v <= 1.0, "must be finite and in [-1, 1]"),
    # eps_L2 = 0 leaves w unidentified (the fit is invariant to w_c -> a w_c, Lambda_c -> Lambda_c / a)
    # and the Lambda-step singular for vanishing w.
    "eps_L2": (lambda v: _finite(v) and v > 0, "must be finite and > 0"),
    "tau": (lambda v: _finite(v) and 0.0 <= v <= 1.0, "must be in [0, 1]"),
    "top_k": (lambda v: v is None or (_int(v) and v >= 1), "must be None or an int >= 1"),
    "keep_ratio": (lambda v: v is None or (_finite(v) and 0.0 < v <= 1.0),
                   "must be None or in (0, 1]"),
    "min_channels": (lambda v: _int(v) and v >= 1, "must be an int >= 1"),
}


def check_setting(name: str, value: Any) -> None:
    """Raise ValueError("<what it must be>, got <value>") if ``value`` breaks ``name``'s rule.

    The rules of :class:`RegressionConfig` (``eps_E``, ``eps_L2``, ``tau``, ``top_k``,
    ``keep_ratio``, ``min_channels``); other names pass.
    """
    rule = _RULES.get(name)
    if rule is not None and not rule[0](value):
        raise ValueError(f"{rule[1]}, got {value!r}")


@dataclass(frozen=True)
class RegressionConfig:
    """Settings of the entropic regression of one layer (validated, immutable).

    The one form a layer's settings take from the run config (or a search trial) to the
    solver; :meth:`for_layer` resolves the layer-dependent parts (``keep_ratio``,
    ``min_channels`` against the layer's C) and ``dataclasses.replace`` derives variants.

    Attributes:
        eps_E: Signed entropy weight in [-1, 1]. Negative (default) rewards low entropy of
            w, i.e. few channels (the paper's "entropy minimisation"); positive spreads w
            (SPARTAn). Well-behaved in the method spec's measurements: [-3e-3, 0].
        eps_L2: Ridge weight on Lambda (> 0), the sparsity knob (larger: sparser).
        standardize: Centre each input channel and divide it by its pooled std, and scale Y
            by one global factor to mean output variance 1; undone on the returned weights.
            The single Y factor keeps the outputs' relative importance.
        solver: "envelope" minimises F(w) = min_Lambda L with the closed-form Lambda inside
            an exponentiated-gradient step (fast); "alternating" alternates the ridge
            Lambda-step and a w-step with Lambda fixed (slow, for cross-checks).
        tol: Stop when the relative decrease of the objective per iteration is below tol.
        max_iter: Iteration cap (outer sweeps for "alternating").
        w_step_iter: Exponentiated-gradient iterations per w-step of "alternating".
        tau: Keep channel c if ``w_c >= tau / C`` (in [0, 1]).
        top_k: If set, keep exactly the top_k channels by w (overrides tau).
        keep_ratio: If set, keep this share in (0, 1] of the layer's channels, rounded
            (``top_k = round(keep_ratio * C)``, replacing ``top_k``).
        min_channels: A layer never keeps fewer channels than this (clamped to C).
        refit: "lstsq" refits the kept channels' weights and bias by least squares with a
            tiny ridge; "shrunk" keeps the solver's ``Lambda D(w)`` (ablation).
        refit_ridge: Ridge of the refit, relative to each channel's pooled variance.
        active_set_threshold: A channel whose w falls below ``active_set_threshold / C``
            leaves the active set: its w is frozen (and reported) and the solves shrink.
            The solve cost is cubic in the active features, so leaving early matters on
            wide layers; 1e-8 (18 nats below the start, 6 orders below ``tau``) gave the
            same selections as 1e-12 on two VGG-16 layers (d = 2304, 4608), whose solves
            took 1.6-1.8x less time together with the envelope solver's step-length rule.
        check_sweeps: After the envelope solver, this many alternating sweeps from its
            solution; if they lower the objective the envelope solver resumes from there.
        restarts: Extra envelope runs from random starting w; the best objective wins.
        init_noise: Log-scale jitter of the starting ``w = 1/C``; breaks exact symmetries
            (duplicated channels), which exponentiated gradient would otherwise preserve.
        escape_noise: Log-scale kick applied to the converged w before one more envelope
            run (kept only if it lowers the objective; repeated while it does, at most
            ``escape_tries`` times). Duplicated (or linearly redundant) channels make the
            symmetric point a saddle of F: the gradient is the same for both twins, only
            the curvature is negative, and the twin ratio grows from the 1e-4 jitter by a
            small factor per step while every other direction converges, so the relative-
            decrease rule stops on the plateau with both twins kept (measured: 42 of 324
            planted-twin layers whose other channels were all worth keeping; F 1.4 % above
            the merged point). The kick makes the twin ratio O(1), after which the descent
            leaves the saddle at once. 0 disables it.
        escape_tries: Most kicks per solve (each costs one short envelope run).
        seed: Seed of the starting jitter, the restarts and the kicks.
    """

    eps_E: float = -1e-3
    eps_L2: float = 0.03
    standardize: bool = True
    solver: Literal["envelope", "alternating"] = "envelope"
    tol: float = 1e-7
    max_iter: int = 500
    w_step_iter: int = 10
    tau: float = 0.05
    top_k: int | None = None
    keep_ratio: float | None = None
    min_channels: int = 1
    refit: Literal["lstsq", "shrunk"] = "lstsq"
    refit_ridge: float = 1e-6
    active_set_threshold: float = 1e-8
    check_sweeps: int = 3
    restarts: int = 0
    init_noise: float = 1e-4
    escape_noise: float = 0.5
    escape_tries: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.solver not in ("envelope", "alternating"):
            raise ValueError(f"RegressionConfig.solver: unknown solver {self.solver!r}")
        if self.refit not in ("lstsq", "shrunk"):
            raise ValueError(f"RegressionConfig.refit: unknown refit {self.refit!r}")
        for name in _RULES:
            try:
                check_setting(name, getattr(self, name))
            except ValueError as exc:
                raise ValueError(f"RegressionConfig.{name} {exc}") from None
        if self.tol <= 0 or self.max_iter < 1 or self.w_step_iter < 1:
            raise ValueError("RegressionConfig: tol, max_iter and w_step_iter must be positive")
        if self.top_k is not None and self.top_k < self.min_channels:
            raise ValueError(
                f"RegressionConfig: top_k={self.top_k} < min_channels={self.min_channels}"
            )
        if self.refit_ridge < 0 or self.active_set_threshold < 0:
            raise ValueError("RegressionConfig: refit_ridge and active_set_threshold must be >= 0")
        if self.check_sweeps < 0 or self.restarts < 0:
            raise ValueError("RegressionConfig: check_sweeps and restarts must be >= 0")
        if not (self.escape_noise >= 0 and math.isfinite(self.escape_noise)):
            raise ValueError(
                f"RegressionConfig.escape_noise must be finite and >= 0, got {self.escape_noise}"
            )
        if self.escape_tries < 0:
            raise ValueError(f"RegressionConfig.escape_tries must be >= 0, got {self.escape_tries}")

    def for_layer(self, num_channels: int, *, eps_L2_factor: float = 1.0) -> RegressionConfig:
        """These settings for a layer of ``num_channels`` input channels.

        ``keep_ratio`` becomes ``top_k``; ``top_k`` and ``min_channels`` are clamped to
        ``[min(min_channels, C), C]``; ``eps_L2`` is multiplied by ``eps_L2_factor`` (the
        cost-aware strength, :mod:`pruning.cost`).
        """
        C = int(num_channels)
        min_ch = min(self.min_channels, C)
        top_k = self.top_k if self.keep_ratio is None else round(self.keep_ratio * C)
        if top_k is not None:
            top_k = int(min(max(top_k, min_ch), C))
        eps_L2 = self.eps_L2 * eps_L2_factor if eps_L2_factor != 1.0 else self.eps_L2
        return dataclasses.replace(self, eps_L2=eps_L2, top_k=top_k, keep_ratio=None,
                                   min_channels=min_ch)


@dataclass
class RegressionResult:
    """Outcome of ``entropic_regression`` for one layer.

    Attributes:
        w: Channel weights, shape (C,), float64. Active channels sum to one; channels that
            left the active set keep the (tiny) value they had when they left.
        keep: Sorted LongTensor of kept input channels.
        weight: Refitted weights (m, len(keep) * k) in the original input units, float64,
            channel-major like the layer's own input.
        bias: Refitted bias (m,), float64; absorbs the mean of the removed channels.
        objective_history: Objective F(w) after every accepted step (non-increasing).
        iterations: Solver iterations (sweeps for "alternating"), restarts included.
        seconds: Wall time of the whole call.
        gap: min kept w / max removed w; inf if nothing was removed. Small gaps (< ~10)
            flag unreliable selections.
        converged: True if the relative-decrease test (or a stall at a stationary point)
            stopped the solver before max_iter.
        rel_error: sum ||y - y_hat||^2 / sum ||y - mean y||^2 on the given moments.
        num_active: Channels still in the solver's active set at the end.
    """

    w: Tensor
    keep: Tensor
    weight: Tensor
    bias: Tensor
    objective_history: list[float]
    iterations: int
    seconds: float
    gap: float
    converged: bool
    rel_error: float
    num_active: int = 0


# ---------------------------------------------------------------------- linear algebra


def cholesky_psd(A: Tensor) -> Tensor:
    """Lower Cholesky factor of a symmetric PSD matrix, with growing jitter if needed."""
    L, info = torch.linalg.cholesky_ex(A)
    if int(info) == 0:
        return L
    scale = float(torch.diagonal(A).abs().mean()) or 1.0
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    jitter = 1e-12 * scale
    for _ in range(12):
        L, info = torch.linalg.cholesky_ex(A + jitter * eye)
        if int(info) == 0:
            return L
        jitter *= 10.0
    raise RuntimeError("Cholesky failed even with jitter; the moments are not a covariance")


# ---------------------------------------------------------------------- the problem


@dataclass
class _Problem:
    """Standardised moments of one layer plus the constants of the objective."""

    C: int
    k: int
    m: int
    n: int
    S: Tensor  # (d, d) standardised cov(X)
    R: Tensor  # (m, d) standardised cov(Y, X)
    tr_v: float  # sum of standardised output variances
    rho: float  # eps_L2 / d: the ridge on Lambda inside the Lambda-step
    eps_E: float
    x_scale: Tensor  # (d,) divide raw centred x by this
    y_scale: float  # divide raw centred y by this
    constant: Tensor  # (C,) bool: channels with (numerically) zero variance

    @property
    def d(self) -> int:
        return self.C * self.k


def _constant_channels(moments: Moments) -> Tensor:
    """Bool mask (C,) of channels whose pooled std is ~0 relative to the largest one."""
    std = moments.channel_std()
    top = float(std.max())
    return std <= _CONSTANT_CHANNEL * max(top, 1e-300)


def _x_scale(moments: Moments, standardize: bool, constant: Tensor) -> Tensor:
    k = moments.group_size
    if not standardize:
        return torch.ones(moments.num_features, dtype=torch.float64, device=moments.mu_x.device)
    # Constant channels are not blown up to unit variance: their rows stay (near) zero.
    std = moments.channel_std()
    std = torch.where(constant, torch.ones_like(std), std)
    return std.repeat_interleave(k)


def _problem(moments: Moments, config: RegressionConfig) -> _Problem:
    constant = _constant_channels(moments)
    sx = _x_scale(moments, config.standardize, constant)
    V = moments.V
    if config.standardize:
        mean_v = float(V.mean())
        sy = math.sqrt(mean_v) if mean_v > 0 else 1.0
    else:
        sy = 1.0
    S = moments.S / torch.outer(sx, sx)
    S = 0.5 * (S + S.T)
    R = moments.R / (sx * sy)
    d = moments.num_features
    return _Problem(
        C=moments.num_channels,
        k=moments.group_size,
        m=moments.num_outputs,
        n=moments.n,
        S=S,
        R=R,
        tr_v=float(V.sum()) / sy**2,
        rho=config.eps_L2 / d,
        eps_E=config.eps_E,
        x_scale=sx,
        y_scale=sy,
        constant=constant,
    )


class _Active:
    """The solver's working set: active channels and their slices of S and R."""

    def __init__(self, prob: _Problem, channels: Tensor) -> None:
        self.prob = prob
        self.channels = channels
        cols = feature_columns(channels, prob.k)
        self.cols = cols
        self.S = prob.S[cols][:, cols]
        self.R = prob.R[:, cols]

    @property
    def size(self) -> int:
        return int(self.channels.numel())


@dataclass
class _Eval:
    """F(w) and the factorisation that gives Lambda*(w) and the envelope gradient."""

    F: float
    L: Tensor
    Z: Tensor
    dv: Tensor


def _entropy_term(eps_E: float, w: Tensor, logw: Tensor) -> float:
    if eps_E == 0.0:
        return 0.0
    return eps_E * float((w * logw).sum())


@timed("solve.evaluate")
def _evaluate(act: _Active, w: Tensor, logw: Tensor) -> _Eval:
    """F(w) = min_Lambda L: ridge Lambda-step in closed form on the active set."""
    prob = act.prob
    dv = w.repeat_interleave(prob.k)
    # D S D + rho I, built with one d x d temporary (at d = 4608 each one is 170 MB)
    P = act.S * dv[:, None]
    P *= dv[None, :]
    P.diagonal().add_(prob.rho)
    L = cholesky_psd(P)
    B = dv[:, None] * act.R.T
    Z = torch.linalg.solve_triangular(L, B, upper=False)
    fit = (prob.tr_v - float((Z * Z).sum())) / prob.m
    return _Eval(F=fit + _entropy_term(prob.eps_E, w, logw), L=L, Z=Z, dv=dv)


def _lambda_t(ev: _Eval) -> Tensor:
    """Lambda*^T (d_active x m) from an evaluation."""
    return torch.linalg.solve_triangular(ev.L.T, ev.Z, upper=True)


def _envelope_grad(act: _Active, w: Tensor, logw: Tensor, ev: _Eval) -> Tensor:
    """dF/dw_c = -(2 rho/m) ||Lambda*_c||^2 / w_c + eps_E (ln w_c + 1)."""
    prob = act.prob
    lam_t = _lambda_t(ev)
    lam2 = (lam_t * lam_t).sum(1).view(act.size, prob.k).sum(1)
    g = -(2.0 * prob.rho / prob.m) * lam2 / w.clamp_min(1e-300)
    if prob.eps_E != 0.0:
        g = g + prob.eps_E * (logw + 1.0)
    return g


def _normalise_log(logw: Tensor) -> Tensor:
    return logw - torch.logsumexp(logw, 0)


@dataclass
class _State:
    """Solver state over all C channels (log w; inactive entries frozen)."""

    logw: Tensor
    active: Tensor  # LongTensor of active channels

    def clone(self) -> _State:
        return _State(self.logw.clone(), self.active.clone())


def _drop_inactive(
    state: _State, prob: _Problem, threshold: float, *, min_fraction: float = 0.0
) -> bool:
    """Freeze channels whose w fell below threshold / C; renormalise the rest.

    With ``min_fraction`` > 0 nothing happens until at least that share of the active
    channels is below the threshold: every change of the active set costs the caller one
    extra factorisation, which is not worth it for one or two channels out of hundreds.
    """
    if threshold <= 0 or state.active.numel() <= 1:
        return False
    la = state.logw[state.active]
    cut = math.log(threshold / prob.C)
    alive = la >= cut
    n_dead = int((~alive).sum())
    if n_dead == 0 or n_dead < min_fraction * int(alive.numel()):
        return False
    if not bool(alive.any()):
        alive[la.argmax()] = True
    state.active = state.active[alive]
    state.logw[state.active] = _normalise_log(state.logw[state.active])
    return True


# ---------------------------------------------------------------------- solvers


@dataclass
class _Run:
    state: _State
    history: list[float] = field(default_factory=list)
    iterations: int = 0
    converged: bool = False


def _eg_search(
    f: Callable[[Tensor, Tensor], tuple[float, object]],
    logw: Tensor,
    w: Tensor,
    F0: float,
    g: Tensor,
    eta: float,
) -> tuple[Tensor, Tensor, float, object, float] | None:
    """One exponentiated-gradient step with Armijo backtracking.

    Returns (logw, w, F, payload, eta) of the accepted point, or None if no step of any
    size decreases f (a stationary point to rounding).
    """
    for _ in range(40):
        lw = _normalise_log(logw - eta * g)
        wn = lw.exp()
        Fn, payload = f(wn, lw)
        decrease = float((g * (wn - w)).sum())
        if Fn <= F0 + _ARMIJO * decrease and Fn <= F0:
            return lw, wn, Fn, payload, eta
        if decrease == 0.0:
            return None
        eta *= 0.5
    return None


def _initial_eta(g: Tensor) -> float:
    spread = float(g.max() - g.min())
    return 1.0 / spread if spread > 0 else 1.0


def _solve_envelope(prob: _Problem, state: _State, config: RegressionConfig) -> _Run:
    run = _Run(state=state)
    act = _Active(prob, state.active)
    logw = state.logw[state.active]
    w = logw.exp()
    ev = _evaluate(act, w, logw)
    run.history.append(ev.F)
    g = _envelope_grad(act, w, logw, ev)
    eta = _initial_eta(g)

    def f(wn: Tensor, lw: Tensor) -> tuple[float, _Eval]:
        e = _evaluate(act, wn, lw)
        return e.F, e

    for _ in range(config.max_iter):
        run.iterations += 1
        if act.size <= 1:
            run.converged = True
            break
        eta_try = eta
        step = _eg_search(f, logw, w, ev.F, g, eta_try)
        if step is None:
            run.converged = True
            break
        logw, w, F_new, payload, eta = step
        assert isinstance(payload, _Eval)
        F_old, ev = ev.F, payload
        state.logw[state.active] = logw
        if _drop_inactive(state, prob, config.active_set_threshold,
                          min_fraction=_DROP_MIN_FRACTION):
            # Freezing channels at ~1e-8 / C weight changes F only by rounding.
            act = _Active(prob, state.active)
            logw = state.logw[state.active]
            w = logw.exp()
            ev = _evaluate(act, w, logw)
        run.history.append(ev.F)
        g = _envelope_grad(act, w, logw, ev)
        # Try a longer step only after the full one was accepted: after a backtrack the
        # accepted length is kept, else almost every iteration pays a rejected trial
        # (one Cholesky of the active system each; 52 -> 41 evaluations on a VGG layer).
        if eta == eta_try:
            eta *= 2.0
        if F_old - F_new <= config.tol * max(abs(F_old), 1e-300):
            run.converged = True
            break
    return run


def _w_step(
    act: _Active, lam_t: Tensor, logw: Tensor, config: RegressionConfig
) -> tuple[Tensor, Tensor]:
    """Minimise (1/m)(w^T A w - 2 b^T w) + eps_E sum w ln w on the simplex, Lambda fixed."""
    prob = act.prob
    ca, k = act.size, prob.k
    A = ((lam_t @ lam_t.T) * act.S).view(ca, k, ca, k).sum((1, 3))
    b = (lam_t * act.R.T).sum(1).view(ca, k).sum(1)

    def q(wn: Tensor, lw: Tensor) -> tuple[float, None]:
        val = float(wn @ (A @ wn) - 2.0 * (b @ wn)) / prob.m
        return val + _entropy_term(prob.eps_E, wn, lw), None

    def grad(wn: Tensor, lw: Tensor) -> Tensor:
        gr = (2.0 / prob.m) * (A @ wn - b)
        return gr + prob.eps_E * (lw + 1.0) if prob.eps_E != 0.0 else gr

    w = logw.exp()
    val, _ = q(w, logw)
    g = grad(w, logw)
    eta = _initial_eta(g)
    for _ in range(config.w_step_iter):
        step = _eg_search(q, logw, w, val, g, eta)
        if step is None:
            break
        logw, w, new_val, _, eta = step
        done = val - new_val <= config.tol * max(abs(val), 1e-300)
        val = new_val
        g = grad(w, logw)
        eta *= 2.0
        if done:
            break
    return logw, w


def _solve_alternating(
    prob: _Problem, state: _State, config: RegressionConfig, *, max_sweeps: int
) -> _Run:
    run = _Run(state=state)
    act = _Active(prob, state.active)
    logw = state.logw[state.active]
    w = logw.exp()
    ev = _evaluate(act, w, logw)  # Lambda-step from the start: the ridge solution
    run.history.append(ev.F)
    for _ in range(max_sweeps):
        run.iterations += 1
        if act.size <= 1:
            run.converged = True
            break
        logw, w = _w_step(act, _lambda_t(ev), logw, config)
        F_old = ev.F
        # The w-step cannot raise L and the exact Lambda-step lowers it further.
        ev = _evaluate(act, w, logw)
        F_new = ev.F
        state.logw[state.active] = logw
        if _drop_inactive(state, prob, config.active_set_threshold):
            act = _Active(prob, state.active)
            logw = state.logw[state.active]
            w = logw.exp()
            ev = _evaluate(act, w, logw)
        run.history.append(ev.F)
        if F_old - F_new <= config.tol * max(abs(F_old), 1e-300):
            run.converged = True
            break
    return run


def _start_state(prob: _Problem, config: RegressionConfig, *, noise: float, seed: int) -> _State:
    """w = 1/C with a seeded log-scale jitter; constant channels start (and stay) at w = 0.

    A constant channel cannot explain any variance (its mean goes into the bias), so it
    never enters the active set: otherwise the entropy term alone could hand it weight.
    """
    dev = prob.S.device
    gen = torch.Generator().manual_seed(seed)
    jitter = torch.randn(prob.C, generator=gen, dtype=torch.float64).to(dev)
    active = torch.nonzero(~prob.constant).reshape(-1)
    if active.numel() == 0:
        active = torch.zeros(1, dtype=torch.long, device=dev)
    logw = torch.full((prob.C,), -math.inf, dtype=torch.float64, device=dev)
    logw[active] = _normalise_log(noise * jitter[active])
    return _State(logw=logw, active=active)


def _escape_saddles(prob: _Problem, run: _Run, config: RegressionConfig, *, seed: int) -> _Run:
    """Kick the converged log w and re-solve; keep the result only if F went down.

    Exponentiated gradient keeps w_i / w_j fixed when channels i and j have the same
    gradient, which exact duplicates have at every symmetric point; with a tiny starting
    jitter the ratio grows too slowly to matter before the relative-decrease rule stops.
    A log-scale kick of ``escape_noise`` on the active channels (frozen ones stay frozen)
    moves the state off such a saddle; a true local minimum pulls it back to the same F.
    """
    if config.escape_noise <= 0 or config.escape_tries == 0:
        return run
    gen = torch.Generator().manual_seed(seed)
    for _ in range(config.escape_tries):
        if run.state.active.numel() <= 1:
            break
        state = run.state.clone()
        act = state.active
        kick = torch.randn(int(act.numel()), generator=gen, dtype=torch.float64).to(
            state.logw.device)
        state.logw[act] = _normalise_log(state.logw[act] + config.escape_noise * kick)
        trial = _solve_envelope(prob, state, config)
        F_old = run.history[-1]
        better = trial.history[-1] < F_old - config.tol * max(abs(F_old), 1e-300)
        if not better:
            run.iterations += trial.iterations
            break
        run = _Run(state=trial.state, history=run.history + trial.history[-1:],
                   iterations=run.iterations + trial.iterations, converged=trial.converged)
    return run


def _solve(prob: _Problem, config: RegressionConfig) -> _Run:
    if config.solver == "alternating":
        state = _start_state(prob, config, noise=config.init_noise, seed=config.seed)
        return _solve_alternating(prob, state, config, max_sweeps=config.max_iter)

    best: _Run | None = None
    for r in range(config.restarts + 1):
        noise = config.init_noise if r == 0 else 1.0
        state = _start_state(prob, config, noise=noise, seed=config.seed + r)
        run = _solve_envelope(prob, state, config)
        # The problem is non-convex and exponentiated gradient can stall in a flat valley:
        # a few literal alternating sweeps from the solution check it; if they find a
        # lower objective, the envelope solver resumes from there.
        for _ in range(2):
            if config.check_sweeps == 0:
                break
            trial = _solve_alternating(
                prob, run.state.clone(), config, max_sweeps=config.check_sweeps
            )
            F_env = run.history[-1]
            if trial.history[-1] >= F_env - config.tol * max(abs(F_env), 1e-300):
                break
            resumed = _solve_envelope(prob, trial.state, config)
            run = _Run(
                state=resumed.state,
                history=run.history + trial.history[1:] + resumed.history[1:],
                iterations=run.iterations + trial.iterations + resumed.iterations,
                converged=resumed.converged,
            )
        run = _escape_saddles(prob, run, config, seed=config.seed + 7919 * (r + 1))
        if best is None or run.history[-1] < best.history[-1]:
            if best is not None:
                run.iterations += best.iterations
            best = run
        else:
            best.iterations += run.iterations
    assert best is not None
    return best


@contextlib.contextmanager
def _small_problem_threads(prob: _Problem) -> Iterator[None]:
    """Run small CPU solves single-threaded.

    The solver issues thousands of small BLAS/LAPACK calls; with several intra-op threads on
    a busy machine each call pays thread wake-up and spinning, which measured 10-50x slower
    than one thread for d <= ~100 and still 5-20x slower at d = 576-1152 (2-core CPU, load
    ~5); above ~1500 the factorisations are large enough to gain from threads on an idle
    machine. The setting is restored on exit.
    """
    if prob.S.device.type != "cpu" or prob.d > _SINGLE_THREAD_MAX_D:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------- public API


def select_channels(w: Tensor, *, tau: float, top_k: int | None, min_channels: int) -> Tensor:
    """Channels to keep from the channel weights.

    Args:
        w: Channel weights (C,).
        tau: Keep ``w_c >= tau / C`` (ignored if top_k is set).
        top_k: Keep exactly this many channels, the largest w (ties: lower index first).
        min_channels: Keep at least this many (largest w), clamped to C.

    Returns:
        Sorted LongTensor of kept channel indices, on w's device.

    Raises:
        ValueError: If top_k is out of [1, C] or below min_channels.
    """
    C = int(w.numel())
    order = torch.sort(w.reshape(-1), descending=True, stable=True).indices
    if top_k is not None:
        if not 1 <= top_k <= C:
            raise ValueError(f"select_channels: top_k={top_k} not in [1, {C}]")
        if top_k < min_channels:
            raise ValueError(f"select_channels: top_k={top_k} < min_channels={min_channels}")
        keep = order[:top_k]
    else:
        count = int((w >= tau / C).sum())
        keep = order[: max(count, min(min_channels, C))]
    return torch.sort(keep).values


@timed("refit")
def refit(moments: Moments, keep: Tensor, *, ridge: float) -> tuple[Tensor, Tensor]:
    """Least-squares weights and bias of the outputs on the kept channels.

    Solves ``(S_KK + ridge * diag(pooled channel variance)) W^T = R_K^T`` by Cholesky and
    ``bias = mu_y - W mu_x_K``, i.e. a ridge that is uniform in standardised units, so
    ``ridge`` is relative. With fewer samples than kept features a larger ridge is used
    (and a warning emitted) so that the result stays finite.

    Args:
        moments: Moments of the layer.
        keep: LongTensor of kept channels (order defines the column order of the result).
        ridge: Relative ridge, e.g. 1e-6.

    Returns:
        ``(weight, bias)``: weight (m, len(keep) * k) in original input units and bias (m,),
        float64 on the moments' device.
    """
    k = moments.group_size
    keep = torch.as_tensor(keep, dtype=torch.long, device=moments.mu_x.device).reshape(-1)
    cols = feature_columns(keep, k)
    dk = int(cols.numel())
    used = effective_ridge(moments, dk, ridge)
    if used != ridge:
        warnings.warn(
            f"refit: T={moments.n} samples < {dk} features; adding ridge "
            f"{_UNDERDETERMINED_RIDGE:g} (relative) to stay finite",
            RuntimeWarning,
            stacklevel=3,  # the caller, past the phases.timed wrapper
        )
        ridge = used
    S = moments.S[cols][:, cols]
    S = 0.5 * (S + S.T)
    R = moments.R[:, cols]
    var = torch.diagonal(S).clamp_min(0.0).view(-1, k).mean(1)
    floor = float(var[var > 0].mean()) if bool((var > 0).any()) else 1.0
    var = torch.where(var > _CONSTANT_CHANNEL * floor, var, torch.full_like(var, floor))
    A = S + torch.diag(ridge * var.repeat_interleave(k))
    L = cholesky_psd(A)
    weight = torch.cholesky_solve(R.T.contiguous(), L).T
    bias = moments.mu_y - weight @ moments.mu_x[cols]
    return weight, bias


def effective_ridge(moments: Moments, features: int, ridge: float) -> float:
    """The relative ridge :func:`refit` uses for ``features`` kept features: ``ridge``, raised
    to a floor when there are fewer samples than features (so the solve stays finite)."""
    return max(ridge, _UNDERDETERMINED_RIDGE) if moments.n < features else ridge


def refit_on_heldout(train: Moments, held: Moments, keep: Tensor,
                     ridges: Sequence[float] = REFIT_RIDGES) -> tuple[Tensor, Tensor, float]:
    """The least-squares refit whose ridge gives the smallest error on held-out rows.

    Each relative ridge of ``ridges`` refits on ``train`` (:func:`refit`) and is scored by
    :func:`reconstruction_error` on ``held``; the smallest ridge within 0.1 % of the best
    error wins. With few rows per feature (a small calibration set, late layers) the
    unregularised refit fits the sampled rows and not the layer; the held-out rows say how
    much shrinkage the data supports, layer by layer.

    Returns:
        ``(weight, bias, ridge)`` of the chosen refit.
    """
    if held.n == 0:
        raise ValueError("refit_on_heldout: no held-out rows (heldout_fraction is 0)")
    features = int(torch.as_tensor(keep).numel()) * train.group_size
    # the ridges refit really uses (a floor when T < d): each tried once, reported as used
    tried = sorted({effective_ridge(train, features, r) for r in ridges})
    fits: list[tuple[float, Tensor, Tensor, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # T < d: refit raises its own ridge
        for ridge in tried:
            weight, bias = refit(train, keep, ridge=ridge)
            err = reconstruction_error(held, keep, weight, bias)
            fits.append((err, weight, bias, ridge))
    finite = [f for f in fits if math.isfinite(f[0])]
    if not finite:  # nothing to choose on: the smallest ridge, as a fixed refit would
        return fits[0][1], fits[0][2], fits[0][3]
    low = min(f[0] for f in finite)
    best = next(f for f in finite if f[0] <= low * 1.001 + 1e-12)
    return best[1], best[2], best[3]


@timed("report")
def reconstruction_error(moments: Moments, keep: Tensor, weight: Tensor, bias: Tensor) -> float:
    """Relative error of ``y_hat = bias + weight x_keep`` on (possibly held-out) moments.

    Args:
        moments: Moments to evaluate on.
        keep: Kept channels, matching weight's column layout.
        weight: (m, len(keep) * k) in original units.
        bias: (m,).

    Returns:
        ``sum ||y - y_hat||^2 / sum ||y - mean y||^2`` (0.0 for constant, exactly
        reproduced outputs; inf if the outputs are constant but not reproduced).
    """
    dev = moments.mu_x.device
    keep = torch.as_tensor(keep, dtype=torch.long, device=dev).reshape(-1)
    cols = feature_columns(keep, moments.group_size)
    W = weight.to(device=dev, dtype=torch.float64)
    b = bias.to(device=dev, dtype=torch.float64)
    S = moments.S[cols][:, cols]
    R = moments.R[:, cols]
    e = moments.mu_y - b - W @ moments.mu_x[cols]
    tr_v = float(moments.V.sum())
    num = tr_v + float((e * e).sum()) - 2.0 * float((W * R).sum()) + float(((W @ S) * W).sum())
    num = max(num, 0.0)
    if tr_v <= 0.0:
        return 0.0 if num <= 1e-300 else math.inf
    return num / tr_v


def lambda_step(
    moments: Moments, w: Tensor, config: RegressionConfig | None = None
) -> tuple[Tensor, Tensor]:
    """Closed-form ridge Lambda-step for fixed w, in standardised units (spec section 3).

    Args:
        moments: Moments of the layer.
        w: Channel weights (C,), positive.
        config: Supplies eps_L2 and standardize.

    Returns:
        ``(Lambda, lambda0)``: Lambda (m, d) and the intercept (m,), both in the
        standardised (centred) coordinates, where the optimal intercept is zero.
    """
    config = config or RegressionConfig()
    prob = _problem(moments, config)
    act = _Active(prob, torch.arange(prob.C, device=prob.S.device))
    w = w.to(device=prob.S.device, dtype=torch.float64)
    ev = _evaluate(act, w, w.clamp_min(1e-300).log())
    return _lambda_t(ev).T.contiguous(), torch.zeros(prob.m, dtype=torch.float64, device=w.device)


def envelope_gradient(
    moments: Moments, w: Tensor, config: RegressionConfig | None = None
) -> Tensor:
    """Gradient of F(w) = min_Lambda L at w (spec section 3), shape (C,).

    ``dF/dw_c = -(2 eps_L2/(d m)) ||Lambda*_c||^2 / w_c + eps_E (ln w_c + 1)``.
    """
    config = config or RegressionConfig()
    prob = _problem(moments, config)
    act = _Active(prob, torch.arange(prob.C, device=prob.S.device))
    w = w.to(device=prob.S.device, dtype=torch.float64)
    logw = w.clamp_min(1e-300).log()
    return _envelope_grad(act, w, logw, _evaluate(act, w, logw))


def objective(
    moments: Moments,
    w: Tensor,
    Lambda: Tensor,
    lambda0: Tensor,
    config: RegressionConfig | None = None,
) -> float:
    """The objective L(w, Lambda, lambda0) of spec section 2, from moments.

    Args:
        moments: Moments of the layer.
        w: Channel weights (C,).
        Lambda: (m, d), in the standardised coordinates of ``config`` (see lambda_step).
        lambda0: (m,) intercept in the same (centred) coordinates.
        config: Supplies eps_E, eps_L2 and standardize.

    Returns:
        L as a Python float.
    """
    config = config or RegressionConfig()
    prob = _problem(moments, config)
    dev = prob.S.device
    w = w.to(device=dev, dtype=torch.float64)
    lam = Lambda.to(device=dev, dtype=torch.float64)
    l0 = lambda0.to(device=dev, dtype=torch.float64)
    Q = lam * w.repeat_interleave(prob.k)
    fit = (
        prob.tr_v
        + float((l0 * l0).sum())
        - 2.0 * float((Q * prob.R).sum())
        + float(((Q @ prob.S) * Q).sum())
    ) / prob.m
    pos = w > 0
    ent = config.eps_E * float((w[pos] * w[pos].log()).sum())
    return fit + prob.rho * float((lam * lam).sum()) / prob.m + ent


@timed("solve")
def entropic_regression(
    moments: Moments, config: RegressionConfig | None = None
) -> RegressionResult:
    """Sparse entropic regression of one layer: choose input channels and refit.

    Starting point: ``w = 1/C`` (with a tiny seeded jitter, ``init_noise``). The spec starts
    from ``Lambda = C * Q`` so that the start reproduces the layer; working from moments,
    the envelope solver always uses the closed-form Lambda*(w), and the alternating solver
    starts from the ridge Lambda-step at ``w = 1/C``. For ``eps_L2 -> 0`` and ``T >= d`` that
    ridge solution is ``C * Q_ls`` with ``Q_ls`` the least-squares fit of Y on X, which is
    the layer's own weight when X and Y come from the same (unpruned) layer.

    Args:
        moments: Second moments of the layer's inputs X (C channels of k features) and
            outputs Y (m).
        config: Solver settings; defaults to ``RegressionConfig()``.

    Returns:
        RegressionResult with channel weights, kept channels and refitted weight/bias.

    Example:
        >>> res = entropic_regression(mom, RegressionConfig(eps_L2=0.03))
        >>> layer_weight = res.weight.view(m, len(res.keep), kh, kw)
    """
    config = config or RegressionConfig()
    if config.keep_ratio is not None:
        config = config.for_layer(moments.num_channels)
    t0 = time.perf_counter()
    d = moments.num_features
    if moments.n < d:
        warnings.warn(
            f"entropic_regression: T={moments.n} samples < d={d} features; the fit is "
            "underdetermined, the refit gets extra ridge (collect T >= 10 d)",
            RuntimeWarning,
            stacklevel=3,  # the caller, past the phases.timed wrapper
        )
    prob = _problem(moments, config)
    with _small_problem_threads(prob):
        run = _solve(prob, config)
    w = run.state.logw.exp()

    keep = select_channels(w, tau=config.tau, top_k=config.top_k, min_channels=config.min_channels)
    if config.refit == "lstsq":
        with warnings.catch_warnings():
            # Already warned above with the layer-level numbers.
            warnings.simplefilter("ignore", RuntimeWarning)
            weight, bias = refit(moments, keep, ridge=config.refit_ridge)
    else:
        weight, bias = _shrunk_weights(moments, prob, run.state, keep)

    dropped = torch.ones(prob.C, dtype=torch.bool, device=w.device)
    dropped[keep] = False
    if bool(dropped.any()):
        max_drop = float(w[dropped].max())
        gap = float(w[keep].min()) / max_drop if max_drop > 0 else math.inf
    else:
        gap = math.inf
    return RegressionResult(
        w=w,
        keep=keep,
        weight=weight,
        bias=bias,
        objective_history=run.history,
        iterations=run.iterations,
        seconds=time.perf_counter() - t0,
        gap=gap,
        converged=run.converged,
        rel_error=reconstruction_error(moments, keep, weight, bias),
        num_active=int(run.state.active.numel()),
    )


def _shrunk_weights(
    moments: Moments, prob: _Problem, state: _State, keep: Tensor
) -> tuple[Tensor, Tensor]:
    """The solver's own Q_hat = Lambda D(w) on the kept channels, in original units."""
    act = _Active(prob, state.active)
    logw = state.logw[state.active]
    w = logw.exp()
    q_act = _lambda_t(_evaluate(act, w, logw)).T * w.repeat_interleave(prob.k)
    Q = torch.zeros(prob.m, prob.d, dtype=torch.float64, device=w.device)
    Q[:, act.cols] = q_act
    cols = feature_columns(keep, prob.k)
    weight = prob.y_scale * Q[:, cols] / prob.x_scale[cols]
    bias = moments.mu_y - weight @ moments.mu_x[cols]
    return weight, bias
