"""CLI surface and logs: --version, help text on every flag, and one progress line per
finished trial in a non-TTY log with totals over the whole study (also after a resume)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import search_helpers as h

from nas.backends.optuna import run_optuna
from nas.cli import build_parser
from nas.search import _Progress


def test_version_flag() -> None:
    out = subprocess.run([sys.executable, "-m", "nas.cli", "--version"], capture_output=True,
                         text=True, timeout=60, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and re.fullmatch(r"entropic-nas \S+\n", out.stdout)


def test_version_and_help_do_not_import_torch() -> None:
    # a user's first two commands answer at once (they took ~9 s when the parser's imports
    # pulled in the engine)
    code = ("import sys\nfrom nas.cli import build_parser\nbuild_parser()\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=Path(__file__).parents[1])
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stderr


def test_every_flag_has_help() -> None:
    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}"
               for name, sp in subs.choices.items() for a in sp._actions
               if not isinstance(a, argparse._HelpAction) and not a.help]
    assert missing == []
    assert all(sp.description or subs._choices_actions for sp in subs.choices.values())


def _progress(tmp_path: Path, total: int) -> _Progress:
    return _Progress(total, h.OBJECTIVES, None, storage=f"sqlite:///{tmp_path / 'study.db'}",
                     study="p")


def test_one_line_per_trial_with_study_totals_across_a_resume(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kwargs: dict[str, Any] = dict(study_name="p", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
                  run_dir=tmp_path, sampler="random", seed=0)
    run_optuna(evaluate=h.evaluate, n_trials=2, on_trial_end=_progress(tmp_path, 2), **kwargs)
    first = capsys.readouterr().err.splitlines()
    assert [ln.split(":")[0] for ln in first] == ["trial 0 complete", "trial 1 complete"]
    assert "study 2/2 done (2 complete, 0 failed, 0 rejected)" in first[1]
    assert "accuracy" in first[0] and "macs" in first[0]

    # a resumed search (or a second worker) reports the study's totals, not its own count
    import functools

    run_optuna(evaluate=functools.partial(h.evaluate_failing_at, fail_at=3), n_trials=4,
               on_trial_end=_progress(tmp_path, 4), resume=True, **kwargs)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "search: resuming with 2/4 trial(s) already counted"
    assert lines[1].startswith("trial 2 complete") and "study 3/4 done" in lines[1]
    assert lines[2].startswith("trial 3 fail: RuntimeError: deliberate failure in trial 3")
    assert "study 4/4 done (3 complete, 1 failed, 0 rejected)" in lines[2]


def test_long_messages_are_not_wrapped_in_a_non_tty_log(capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from nas import cli, jobs, search

    text = "exported trial #12 (knee) -> " + "/a/rather/long/path" * 8 + ": accuracy 0.9"
    for mod in (cli, jobs, search):
        mod.console.print(text)
        err = capsys.readouterr().err
        assert err.strip() == text, mod.__name__
