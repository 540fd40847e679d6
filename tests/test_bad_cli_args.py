"""Malformed flags, output paths and storage URLs: exit 2 naming the flag, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
from bad_input_helpers import assert_refused, config, run_cli, write_config


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", config())


@pytest.mark.parametrize("value", ["0", "-2", "three", "1.5"])
def test_bad_trials(tmp_path: Path, cfg: Path, capfd, value: str) -> None:
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out, "--trials", value], capfd)
    assert_refused(code, text, "--trials")
    assert not out.exists()


@pytest.mark.parametrize("override", ["search.trails=2", "search.trials=abc", "prune.selection=best"])
def test_a_bad_set_is_named_as_the_flag(tmp_path: Path, cfg: Path, capfd, override: str) -> None:
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out, "--set", override], capfd)
    assert_refused(code, text, f"(from --set {override})")
    assert "with --set: invalid config" in text
    assert not out.exists()


def test_help_names_every_pick_rule_and_no_markup(capfd) -> None:
    code, text = run_cli(["export", "--help"], capfd)
    assert code == 0 and all(r in text for r in ("max-NAME", "min-NAME", "NAME<=X", "NAME>=X"))
    code, text = run_cli(["--help"], capfd)
    assert code == 0 and "``" not in text


@pytest.mark.parametrize("pick", ["best", "macs<=", "macs<=lots", "macs<=1e999", "max-",
                                  "<=5", "macs=<5", "knee please"])
def test_bad_pick_in_search(tmp_path: Path, cfg: Path, capfd, pick: str) -> None:
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out, "--pick", pick], capfd)
    assert_refused(code, text, "--pick")
    assert not out.exists()


def test_out_is_a_file(tmp_path: Path, cfg: Path, capfd) -> None:
    out = tmp_path / "file"
    out.write_text("keep me")
    code, text = run_cli(["search", "--config", cfg, "--out", out], capfd)
    assert_refused(code, text, "--out", str(out), "not a directory")
    assert out.read_text() == "keep me"


def test_out_under_a_file(tmp_path: Path, cfg: Path, capfd) -> None:
    (tmp_path / "file").write_text("x")
    code, text = run_cli(["train", "--config", cfg, "--out", tmp_path / "file" / "run"], capfd)
    assert_refused(code, text, "--out", "is a file")


def test_prune_out_is_a_file(tmp_path: Path, cfg: Path, capfd) -> None:
    (tmp_path / "f").write_text("x")
    code, text = run_cli(["prune", "--config", cfg, "--checkpoint", tmp_path / "ck",
                          "--out", tmp_path / "f"], capfd)
    assert_refused(code, text, "--out")


def test_negative_finetune_epochs(tmp_path: Path, cfg: Path, capfd) -> None:
    code, text = run_cli(["prune", "--config", cfg, "--checkpoint", tmp_path / "ck",
                          "--finetune-epochs", "-1"], capfd)
    assert_refused(code, text, "--finetune-epochs")


BAD_URLS = [
    ("no-scheme", "study.db", "expected a database URL"),
    ("empty", " ", "empty"),
    ("unknown-dialect", "oracle2000://host/db", "unknown database kind"),
    ("postgres-spelling", "postgres://u@localhost:5432/db", "write postgresql://"),
    ("garbage-url", "postgresql://us er@:not-a-port/db", "--storage"),
    ("journal-under-file", "journal:{tmp}/afile/j.log", "is a file"),
    ("port-not-a-number", "postgresql://u@localhost:abc/db", "--storage"),
    ("journal-no-path", "journal:", "needs a file path"),
    ("sqlite-dir", "sqlite:///{tmp}", "is a directory"),
    ("journal-dir", "journal:{tmp}", "is a directory"),
    ("sqlite-under-file", "sqlite:///{tmp}/afile/study.db", "is a file"),
]


@pytest.mark.parametrize("url,names", [(u, n) for _, u, n in BAD_URLS],
                         ids=[i for i, _, _ in BAD_URLS])
def test_bad_storage_url_in_search(tmp_path: Path, cfg: Path, capfd, url: str, names: str
                                   ) -> None:
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "run"
    code, text = run_cli(["search", "--config", cfg, "--out", out,
                          "--storage", url.format(tmp=tmp_path)], capfd)
    assert_refused(code, text, "--storage", names)
    assert not out.exists()


def test_corrupt_study_db(tmp_path: Path, cfg: Path, capfd) -> None:
    db = tmp_path / "run" / "study.db"
    db.parent.mkdir()
    db.write_bytes(b"this is not sqlite" * 100)
    code, text = run_cli(["search", "--config", cfg, "--out", db.parent, "--resume"], capfd)
    assert_refused(code, text, str(db), "not a SQLite database")
    assert not (db.parent / "config.yaml").exists()


def test_truncated_study_db(tmp_path: Path, cfg: Path, capfd) -> None:
    import sqlite3

    db = tmp_path / "t.db"
    con = sqlite3.connect(db)
    con.execute("create table t (x)")
    con.executemany("insert into t values (?)", [("x" * 500,)] * 200)
    con.commit()
    con.close()
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    code, text = run_cli(["pareto", "--storage", f"sqlite:///{db}", "--study", "s"], capfd)
    assert_refused(code, text, "--storage", str(db))


@pytest.mark.parametrize("cmd", ["pareto", "export"])
def test_missing_database(tmp_path: Path, capfd, cmd: str) -> None:
    extra = ["--out", tmp_path / "e"] if cmd == "export" else []
    code, text = run_cli([cmd, "--storage", f"sqlite:///{tmp_path / 'none.db'}",
                          "--study", "s", *extra], capfd)
    assert_refused(code, text, "--storage", "no Optuna database")
    assert not (tmp_path / "none.db").exists()


def test_missing_journal(tmp_path: Path, capfd) -> None:
    code, text = run_cli(["pareto", "--storage", f"journal:{tmp_path / 'j.log'}",
                          "--study", "s"], capfd)
    assert_refused(code, text, "--storage", "no Optuna journal")
    assert not (tmp_path / "j.log").exists()


def test_run_dir_without_study_db(tmp_path: Path, capfd) -> None:
    code, text = run_cli(["pareto", "--storage", tmp_path, "--study", "s"], capfd)
    assert_refused(code, text, "--storage", "no study.db")


@pytest.mark.parametrize("pick", ["best", "macs<=x", "min-"])
def test_bad_pick_in_export(tmp_path: Path, capfd, pick: str) -> None:
    code, text = run_cli(["export", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                          "--study", "s", "--pick", pick, "--out", tmp_path / "e"], capfd)
    assert_refused(code, text, "--pick")


def test_export_out_is_a_file(tmp_path: Path, capfd) -> None:
    (tmp_path / "f").write_text("x")
    code, text = run_cli(["export", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                          "--study", "s", "--out", tmp_path / "f"], capfd)
    assert_refused(code, text, "--out")


def test_export_data_root_missing(tmp_path: Path, capfd) -> None:
    code, text = run_cli(["export", "--storage", f"sqlite:///{tmp_path / 'x.db'}",
                          "--study", "s", "--out", tmp_path / "e",
                          "--data-root", tmp_path / "nodata"], capfd)
    assert_refused(code, text, "--data-root")
