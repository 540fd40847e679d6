"""`pip install entropic-nas` without extras: the engine and the Optuna search work with
none of ray, wandb, plotly, onnx, psycopg, timm or mlxtend importable (each simulated as not
installed in a fresh process); what is skipped says which extra brings it, and an explicit
request for a missing extra stops before any work with exit 2."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
import yaml
from bad_input_helpers import config

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = ("ray", "wandb", "plotly", "onnx", "onnxruntime", "onnxscript", "psycopg", "timm",
            "mlxtend")

RUN = textwrap.dedent("""
    import sys
    for m in {optional!r}:
        sys.modules[m] = None  # not installed
    from nas.cli import main
    sys.exit(main({argv!r}))
""")


def _cli(argv: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = RUN.format(optional=OPTIONAL, argv=argv)
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, env={"PATH": "/usr/bin:/bin",
                                                       "PYTHONPATH": str(ROOT),
                                                       "HOME": str(tmp_path)})


def _config(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(config(**{"search.trials": 2, "wandb.enabled": None,
                                             **changes})))
    return path


def test_the_core_dependencies_hold_no_extra() -> None:
    requires = metadata.requires("entropic-nas") or []  # the installed package's metadata
    core = " ".join(r for r in requires if "extra ==" not in r).lower()
    for module in ("ray", "wandb", "plotly", "onnx", "psycopg", "timm", "mlxtend"):
        assert module not in core, module
    extras = set(metadata.metadata("entropic-nas").get_all("Provides-Extra") or [])
    assert {"ray", "wandb", "postgres", "onnx", "html", "timm", "demo", "all"} <= extras


def test_a_search_runs_without_any_extra(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    proc = _cli(["search", "--config", str(cfg), "--out", "run"], tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "W&B off: wandb is not installed (pip install 'entropic-nas[wandb]')" in out
    run = tmp_path / "run"
    assert (run / "pareto.png").exists() and not (run / "pareto.html").exists()
    export = run / "export"
    assert (export / "arch.json").exists() and (export / "weights.safetensors").exists()
    assert not (export / "model.onnx").exists()
    assert "onnx is not installed (pip install 'entropic-nas[onnx]')" in \
        (export / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize(("argv", "extra"), [
    (["--backend", "ray"], "entropic-nas[ray]"),
    (["--set", "wandb.enabled=true"], "entropic-nas[wandb]"),
])
def test_an_explicit_request_for_a_missing_extra_stops_first(tmp_path: Path, argv: list[str],
                                                             extra: str) -> None:
    cfg = _config(tmp_path)
    proc = _cli(["search", "--config", str(cfg), "--out", "run", *argv], tmp_path)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert extra in proc.stderr
    assert not (tmp_path / "run" / "pretrained").exists()  # before any work
