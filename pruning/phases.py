"""Named phases of the engine, for profilers and timing hooks.

Each step of a sparsify pass runs inside a *phase*: a ``torch.profiler.record_function``
region named ``entropic.<phase>`` (so it shows up in any ``torch.profiler`` trace) and, while
a listener is registered with :func:`listen`, a pair of ``enter(name)`` / ``exit(name)``
calls on it. Benchmarks time the engine through this hook instead of wrapping private
functions, so a refactor that keeps the phase names keeps their timings::

    from pruning import phases

    class Count:
        def __init__(self): self.n = 0
        def enter(self, name): self.n += name == "solve.evaluate"
        def exit(self, name): pass

    with phases.listen(Count()) as c:
        sparsify(model, loader)
    print(c.n, "objective evaluations")

The phases (:data:`NAMES`) nest: ``unit`` (one layer or coupled group) holds ``collect``
(``forward.input``, ``forward.output``, ``patches``, ``checks``, ``moments``), ``solve``
(``solve.evaluate``: one objective evaluation, one Cholesky; ``refit``), ``surgery`` and
``report``; ``setup`` (dependency graph), ``measure`` (parameter and MAC counts) and
``bn_recalibration`` run outside the units. When the activation caches are on,
``forward.output`` is the one reference pass that fills them (inside the first ``collect``).
With no profiler and no listener a decorated call costs a fraction of a microsecond.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, Protocol, TypeVar

import torch

__all__ = ["NAMES", "PhaseListener", "listen", "phase", "timed"]

NAMES = ("unit", "collect", "forward.input", "forward.output", "patches", "checks", "moments",
         "solve", "solve.evaluate", "refit", "surgery", "report", "setup", "measure",
         "bn_recalibration")

P = ParamSpec("P")
R = TypeVar("R")
L = TypeVar("L", bound="PhaseListener")


class PhaseListener(Protocol):
    """Told when a phase starts and ends (same thread, properly nested)."""

    def enter(self, name: str) -> None: ...

    def exit(self, name: str) -> None: ...


_listeners: list[PhaseListener] = []


# A profiler region costs ~10 us even with no profiler running; torch's own check is ~0.1 us.
# (An older torch without it: always open the region.)
_profiling: Callable[[], bool] = getattr(torch.autograd, "_profiler_enabled", lambda: True)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Run the ``with`` body as phase ``name``."""
    region = (torch.profiler.record_function("entropic." + name) if _profiling()
              else contextlib.nullcontext())
    with region:
        if not _listeners:
            yield
            return
        listeners = list(_listeners)
        for li in listeners:
            li.enter(name)
        try:
            yield
        finally:
            for li in reversed(listeners):
                li.exit(name)


def timed(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: every call of the function is phase ``name``.

    ``name`` may hold ``{keyword}`` fields, filled from the call's keyword arguments
    (``timed("forward.{want}")`` with ``want="input"`` is phase ``forward.input``).
    """

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _listeners and not _profiling():  # the common case: nothing to tell
                return fn(*args, **kwargs)
            with phase(name.format(**kwargs) if "{" in name else name):
                return fn(*args, **kwargs)

        return inner

    return wrap


@contextmanager
def listen(listener: L) -> Iterator[L]:
    """Register ``listener`` for the ``with`` block; yields it."""
    _listeners.append(listener)
    try:
        yield listener
    finally:
        _listeners.remove(listener)
