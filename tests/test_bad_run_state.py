"""Inputs wrong for the run they meet: existing studies, resumes, architectures, checkpoints.

Each is refused with exit 2 and one message naming the flag / file / field, before any work,
and nothing of the earlier run (its config.yaml, its study) is changed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import search_helpers as h
from bad_input_helpers import assert_refused, config, run_cli, write_config

import search_spaces as ss
from nas.backends.optuna import run_optuna
from nas.checkpoint import save_checkpoint
from nas.pareto import load_records


@pytest.fixture(scope="module")
def _finished_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("template") / "run"
    run_optuna(study_name="bad", storage=None, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=h.evaluate, n_trials=2, run_dir=run, sampler="random", seed=0)
    (run / "config.yaml").write_text("# the finished run's config\n")
    return run


@pytest.fixture
def finished(tmp_path: Path, _finished_template: Path) -> Path:
    """A run dir holding a finished 2-trial study named like the config ("bad")."""
    run = tmp_path / "run"
    shutil.copytree(_finished_template, run)
    return run


def _untouched(run: Path) -> None:
    assert (run / "config.yaml").read_text() == "# the finished run's config\n"
    assert len(load_records(f"sqlite:///{run / 'study.db'}", "bad")) == 2
    assert not (run / "pretrained").exists()


def test_existing_study_without_resume(tmp_path: Path, finished: Path, capfd) -> None:
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["search", "--config", cfg, "--out", finished], capfd)
    assert_refused(code, text, "'bad'", "already exists", "--resume")
    _untouched(finished)


def test_failing_search_keeps_the_finished_config(tmp_path: Path, finished: Path, capfd) -> None:
    cfg = write_config(tmp_path / "c.yaml", config(**{"train.epochs": 7}))
    code, text = run_cli(["search", "--config", cfg, "--out", finished, "--pick", "bogus"], capfd)
    assert_refused(code, text, "--pick")
    _untouched(finished)


def test_wrong_backend_on_resume(tmp_path: Path, finished: Path, capfd) -> None:
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["search", "--config", cfg, "--out", finished, "--resume",
                          "--backend", "ray"], capfd)
    assert_refused(code, text, "--backend", "optuna")
    _untouched(finished)


def test_other_objectives_on_resume(tmp_path: Path, finished: Path, capfd) -> None:
    cfg = write_config(tmp_path / "c.yaml", config(**{"search.cost": "params"}))
    code, text = run_cli(["search", "--config", cfg, "--out", finished, "--resume"], capfd)
    assert_refused(code, text, "search.cost", "objectives")
    _untouched(finished)


@pytest.mark.parametrize("cmd", ["pareto", "export"])
def test_missing_study(tmp_path: Path, finished: Path, capfd, cmd: str) -> None:
    extra = ["--out", tmp_path / "e"] if cmd == "export" else []
    code, text = run_cli([cmd, "--storage", f"sqlite:///{finished / 'study.db'}",
                          "--study", "nope", *extra], capfd)
    assert_refused(code, text, "--study", "'nope'", "'bad'")
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("pick,names", [("max-nonsense", ("nonsense",)),
                                        ("macs<=1", ("macs", "smallest"))])
def test_export_pick_the_study_cannot_satisfy(tmp_path: Path, finished: Path, capfd, pick: str,
                                              names: tuple[str, ...]) -> None:
    code, text = run_cli(["export", "--storage", finished, "--study", "bad", "--pick", pick,
                          "--out", tmp_path / "e"], capfd)
    assert_refused(code, text, "--pick", *names)


def test_pareto_accepts_a_run_dir(tmp_path: Path, finished: Path, capfd) -> None:
    code, text = run_cli(["pareto", "--storage", finished, "--study", "nope"], capfd)
    assert_refused(code, text, "--study", "'nope'")


def _arch(tmp_path: Path, family: str = "small_cnn", **changes) -> Path:
    spec = ss.default_spec(family)
    data = spec.to_dict()
    data.update(changes)
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data))
    return path


def test_arch_input_shape_mismatch(tmp_path: Path, capfd) -> None:
    arch = _arch(tmp_path, input_shape=[3, 32, 32])
    cfg = write_config(tmp_path / "c.yaml", config())
    out = tmp_path / "t"
    code, text = run_cli(["train", "--config", cfg, "--arch", arch, "--out", out], capfd)
    assert_refused(code, text, "--arch", str(arch), "input_shape")
    assert not out.exists()


def test_arch_family_mismatch(tmp_path: Path, capfd) -> None:
    arch = _arch(tmp_path, family="lenet5")
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["train", "--config", cfg, "--arch", arch, "--out", tmp_path / "t"],
                         capfd)
    assert_refused(code, text, "--arch", "lenet5", "model.family")


def test_model_arch_in_config_mismatch_fails_search(tmp_path: Path, capfd) -> None:
    arch = _arch(tmp_path, input_shape=[1, 16, 16])
    cfg = write_config(tmp_path / "c.yaml", config(**{"model.arch": str(arch)}))
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out], capfd)
    assert_refused(code, text, "model.arch", "input_shape")
    assert not out.exists()


@pytest.mark.parametrize("width", [10**7, 70_000])
def test_arch_width_without_upper_bound(tmp_path: Path, capfd, width: int) -> None:
    spec = ss.default_spec("small_cnn").with_widths({"conv1": width})
    arch = tmp_path / "arch.json"
    spec.save(arch)
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["train", "--config", cfg, "--arch", arch, "--out", tmp_path / "t"],
                         capfd)
    assert_refused(code, text, "--arch", "conv1", "limit")


def test_arch_too_many_parameters(tmp_path: Path, capfd) -> None:
    widths = {k: 60_000 for k in ss.default_spec("small_cnn").widths}
    spec = ss.default_spec("small_cnn").with_widths(widths)
    arch = tmp_path / "arch.json"
    spec.save(arch)
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["train", "--config", cfg, "--arch", arch, "--out", tmp_path / "t"],
                         capfd)
    assert_refused(code, text, "--arch", "parameters", "limit")


def test_arch_file_is_not_json(tmp_path: Path, capfd) -> None:
    arch = tmp_path / "arch.json"
    arch.write_text("{not json")
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["train", "--config", cfg, "--arch", arch, "--out", tmp_path / "t"],
                         capfd)
    assert_refused(code, text, str(arch), "JSON")


def _checkpoint(tmp_path: Path, family: str, **spec_kw) -> Path:
    spec = ss.default_spec(family, **spec_kw)
    stem = tmp_path / "ck" / "model"
    save_checkpoint(stem, ss.build(spec), spec)
    return stem


def test_checkpoint_of_another_family(tmp_path: Path, capfd) -> None:
    stem = _checkpoint(tmp_path, "lenet5")
    cfg = write_config(tmp_path / "c.yaml", config())
    out = tmp_path / "p"
    code, text = run_cli(["prune", "--config", cfg, "--checkpoint", stem, "--out", out], capfd)
    assert_refused(code, text, "--checkpoint", "lenet5", "model.family")
    assert not out.exists()


def test_checkpoint_input_shape_mismatch(tmp_path: Path, capfd) -> None:
    stem = _checkpoint(tmp_path, "small_cnn", input_shape=(3, 8, 8), num_classes=4)
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["prune", "--config", cfg, "--checkpoint", stem,
                          "--out", tmp_path / "p"], capfd)
    assert_refused(code, text, "--checkpoint", "input")


def test_checkpoint_missing(tmp_path: Path, capfd) -> None:
    cfg = write_config(tmp_path / "c.yaml", config())
    code, text = run_cli(["prune", "--config", cfg, "--checkpoint", tmp_path / "none",
                          "--out", tmp_path / "p"], capfd)
    assert_refused(code, text, "none")


# -- what still escapes: one line, exit 1, the traceback in a log file ----------------------------
def test_unexpected_error_is_one_line_and_a_log(tmp_path: Path, capfd, monkeypatch) -> None:
    import nas.cli

    monkeypatch.setenv("ENTROPIC_NAS_LOG_DIR", str(tmp_path / "logs"))

    def boom(args):  # noqa: ANN001, ANN202
        raise RuntimeError("something nobody checked\nsecond line")

    monkeypatch.setattr(nas.cli, "cmd_families", boom)
    parser = nas.cli.build_parser
    monkeypatch.setattr(nas.cli, "build_parser", lambda: _with_func(parser(), boom))
    code, text = run_cli(["families"], capfd)
    assert code == 1
    assert "Traceback" not in text and "second line" not in text
    assert "RuntimeError: something nobody checked" in text
    logs = list((tmp_path / "logs").glob("error-*.log"))
    assert len(logs) == 1 and str(logs[0]) in text
    body = logs[0].read_text()
    assert "Traceback" in body and "boom" in body


def _with_func(parser, func):  # noqa: ANN001, ANN202
    for action in parser._subparsers._group_actions:  # noqa: SLF001
        action.choices["families"].set_defaults(func=func)
    return parser


@pytest.mark.slow
def test_real_command_line_exit_codes(tmp_path: Path) -> None:
    """The installed entry point (a subprocess): exit 2 and no traceback on bad input."""
    cfg = write_config(tmp_path / "c.yaml", config(**{"prune.eps_E": float("nan")}))
    cases = [(["search", "--config", str(cfg)], "prune.eps_E"),
             (["export", "--storage", "nonsense", "--study", "s", "--out", str(tmp_path / "e")],
              "--storage")]
    script = ("import sys; from nas.cli import main; "
              "sys.exit(main(sys.argv[1:]))")
    for argv, name in cases:
        proc = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True,
                              text=True, cwd=tmp_path, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr + proc.stdout
        assert name in " ".join(proc.stderr.split())
