"""The optional parts of an install: which extra brings which module, and checks that name it.

``pip install entropic-nas`` gives the pruning engine and the Optuna search; the extras
(``pip install 'entropic-nas[ray,wandb,...]'``, all of them with ``[all]``; ``make setup``
installs everything) add a backend, tracking or an output. A missing extra is named where it
is needed: an explicit request (``--backend ray``, ``wandb.enabled: true``) stops before any
work with exit 2; an output that is only a convenience (``pareto.html``, ``model.onnx``) is
skipped with one line saying how to get it.
"""

from __future__ import annotations

import importlib.util

__all__ = ["EXTRAS", "hint", "installed"]

# module -> the extra that installs it
EXTRAS = {"ray": "ray", "wandb": "wandb", "psycopg": "postgres", "onnx": "onnx",
          "onnxruntime": "onnx", "onnxscript": "onnx", "plotly": "html", "timm": "timm",
          "mlxtend": "demo"}


def installed(module: str) -> bool:
    """Whether ``module`` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a None entry in sys.modules: not importable
        return False


def hint(module: str) -> str:
    """``pip install 'entropic-nas[EXTRA]'`` for the extra that brings ``module``."""
    return f"pip install 'entropic-nas[{EXTRAS.get(module, 'all')}]'"
