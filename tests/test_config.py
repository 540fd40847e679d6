"""Run configs: every shipped config validates; bad input names the file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from nas.config import ConfigError, load_config

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.name == path.stem


def test_all_four_configs_ship() -> None:
    assert {p.stem for p in CONFIGS} >= {
        "quickstart", "lenet_mnist", "vgg16_cifar10", "resnet18_cifar10"
    }


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


BASE = "name: t\nmodel: {family: lenet5}\ndata: {name: mnist}\n"


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("train: {epochs: -1}", "train.epochs"),
        ("train: {lr: 0.1, lerning_rate: 3}", "train.lerning_rate: unknown key"),
        ("colour: red", "colour: unknown key"),
        ("prune: {eps_L2: 0}", "prune.eps_L2"),
        ("search: {backend: slurm}", "search.backend"),
        ("search: {space: {eps_L2: {low: 1, high: 0.1}}}", "search.space.eps_L2"),
        ("prune: {moments_dtype: float16}", "prune.moments_dtype"),
        ("prune: {cache_budget_mb: 0}", "prune.cache_budget_mb"),
    ],
)
def test_bad_values_name_the_field(tmp_path: Path, extra: str, needle: str) -> None:
    path = _write(tmp_path, BASE + extra + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_unknown_family_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: t\nmodel: {family: alexnet}\ndata: {name: mnist}\n")
    with pytest.raises(ConfigError, match="model.family.*alexnet"):
        load_config(path)


def test_malformed_yaml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_dotted_overrides(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, BASE), {"train.epochs": 3, "data.root": "/x"})
    assert cfg.train.epochs == 3
    assert cfg.data.root == "/x"


def test_engine_settings_reach_the_sparsify_config(tmp_path: Path) -> None:
    from nas.trial import sparsify_config

    text = BASE + "prune: {moments_dtype: float64, cache_budget_mb: 64, cache_activations: false}\n"
    sc = sparsify_config(load_config(_write(tmp_path, text)).prune, progress=False)
    assert (sc.moments_dtype, sc.cache_budget_bytes, sc.cache_activations) == (
        "float64", 64 << 20, False)
    default = sparsify_config(load_config(_write(tmp_path, BASE)).prune, progress=False)
    assert (default.moments_dtype, default.cache_budget_bytes, default.cache_activations) == (
        "float32", None, True)
