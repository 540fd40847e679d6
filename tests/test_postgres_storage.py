"""PostgreSQL storage, for real: the README's ``postgresql://`` URL with only the shipped
driver (psycopg 3), a bad URL caught before any pre-training, two workers on one study."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
import yaml

from nas.cli import main
from nas.pareto import load_records
from nas.storage import StorageError, check_storage

pytestmark = pytest.mark.slow

TINY = {
    "name": "pg",
    "model": {"family": "small_cnn"},
    "data": {"name": "synthetic", "num_samples": 240, "input_shape": [1, 8, 8],
             "num_classes": 4, "batch_size": 32, "val_fraction": 0.25, "augment": False},
    "train": {"epochs": 1, "lr": 0.05, "threads": 1},
    "prune": {"calib_images": 120, "calib_batch_size": 60, "calib_positions_per_image": 4},
    "finetune": {"epochs": 1, "lr": 0.01, "threads": 1},
    "scratch": {"enabled": False},
    "search": {"backend": "optuna", "trials": 2, "sampler": "random", "uniform_baseline": False,
               "space": {"eps_L2": {"low": 0.05, "high": 1.0, "log": True},
                         "prune_group_prob": 1.0}},
    "wandb": {"enabled": False},
}

WORKER = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import search_helpers as h
    from nas.backends.optuna import run_optuna
    run_optuna(study_name="two", storage={url!r}, objectives=h.OBJECTIVES, sample=h.sample,
               evaluate=h.evaluate, n_trials=6, run_dir={run_dir!r}, sampler="random",
               seed={seed}, resume=True)
""")


def test_readme_url_opens_with_the_shipped_driver(pg_server) -> None:
    url = pg_server.createdb("readme")
    assert url.startswith("postgresql://")  # no +psycopg2: SQLAlchemy picks psycopg 3
    assert check_storage(url, "unused") == url
    study = optuna.create_study(study_name="s", storage=url, directions=["maximize"])
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2


def test_bad_urls_are_one_message_naming_the_url(pg_server, tmp_path: Path) -> None:
    missing_db = pg_server.url("no_such_db")
    with pytest.raises(StorageError, match="no_such_db") as info:
        check_storage(missing_db, tmp_path)
    assert "does not exist" in str(info.value)
    secret = f"postgresql://postgres:hunter2@127.0.0.1:{pg_server.port}/no_such_db"
    with pytest.raises(StorageError) as info:
        check_storage(secret, tmp_path)
    assert "hunter2" not in str(info.value) and "***" in str(info.value)
    with pytest.raises(StorageError, match="psycopg2-binary"):
        check_storage(f"postgresql+psycopg2://postgres@127.0.0.1:{pg_server.port}/x", tmp_path)


def test_cli_fails_before_pretraining_on_an_unreachable_server(
        pg_server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "pg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    closed = f"postgresql://postgres@127.0.0.1:{pg_server.port + 1}/x"  # nothing listens
    t0 = time.perf_counter()
    rc = main(["search", "--config", str(cfg), "--out", str(out), "--storage", closed])
    assert rc == 2 and time.perf_counter() - t0 < 30
    err = capsys.readouterr().err
    assert closed in " ".join(err.split()) and "Traceback" not in err
    assert not (out / "pretrained").exists()  # failed before any pre-training


def test_search_runs_on_the_readme_url(pg_server, tmp_path: Path) -> None:
    url = pg_server.createdb("search")
    cfg = tmp_path / "pg.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["search", "--config", str(cfg), "--out", str(out), "--storage", url]) == 0
    assert not (out / "study.db").exists()
    records = load_records(url, "pg")
    assert [r.state for r in records] == ["COMPLETE", "COMPLETE"]
    assert (out / "export" / "model.onnx").exists()


def test_two_concurrent_workers_share_one_postgres_study(pg_server, tmp_path: Path) -> None:
    url = pg_server.createdb("two")
    tests = str(Path(__file__).parent)
    procs = [subprocess.Popen([sys.executable, "-c", WORKER.format(
                tests=tests, url=url, run_dir=str(tmp_path), seed=seed)],
                cwd=Path(__file__).parents[1], stderr=subprocess.PIPE, text=True)
             for seed in (0, 1)]
    errors = [p.communicate(timeout=240)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    records = load_records(url, "two")
    done = [r for r in records if r.state == "COMPLETE"]
    # both stop at the total; a trial already running in the other worker may still finish
    assert 6 <= len(done) <= 7 and len(done) == len(records)
    assert len({r.number for r in records}) == len(records)
    assert len({r.attrs["worker"]["pid"] for r in done}) == 2  # both workers ran trials
    assert all(Path(r.attrs["trial_dir"], "arch.json").exists() for r in done)


OPEN = textwrap.dedent("""
    import sys, time
    from nas.study import open_storage
    while time.time() < {start}:  # all processes hit the fresh database at the same moment
        time.sleep(0.005)
    open_storage({url!r}).get_all_studies()
""")


def test_workers_opening_a_fresh_database_together_all_succeed(pg_server) -> None:
    url = pg_server.createdb("race")
    start = time.time() + 25  # past every process's import time on a loaded machine
    procs = [subprocess.Popen([sys.executable, "-c", OPEN.format(start=start, url=url)],
                              cwd=Path(__file__).parents[1], stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    errors = [p.communicate(timeout=180)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
