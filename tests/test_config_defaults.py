"""A config section and the engine type it becomes share their fields and defaults: the
train / finetune sections are TrainConfig's fields (less what only code sets), the prune
section's engine and layer settings are SparsifyConfig's and RegressionConfig's, the
recovery section is RecoveryConfig, so a default
changed in the engine is the YAML's default too and no field is lost between them."""

from __future__ import annotations

import dataclasses

from nas.config import FinetuneSection, PruneSection, RecoverySection, TrainSection
from nas.recovery import RecoveryConfig
from nas.train import TrainConfig
from nas.trial import sparsify_config, train_config
from pruning.config import SparsifyConfig
from pruning.regression import RegressionConfig

CODE_ONLY = {"progress"}  # set by the caller (a job's console), not by a config


def test_train_section_is_train_config() -> None:
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    section = TrainSection.model_fields
    assert set(section) - {"recipe"} == set(fields) - CODE_ONLY
    built = train_config(TrainSection(), progress=False)
    assert built == TrainConfig(progress=False)  # every default the same


def test_finetune_section_differs_only_where_it_says() -> None:
    ft = train_config(FinetuneSection(), progress=False)
    base = TrainConfig(progress=False)
    differ = {f.name for f in dataclasses.fields(TrainConfig)
              if getattr(ft, f.name) != getattr(base, f.name)}
    assert differ == {"epochs", "lr"}


def test_prune_section_defaults_are_the_engines() -> None:
    cfg = sparsify_config(PruneSection(), progress=False)
    engine = SparsifyConfig(progress=False)
    for f in dataclasses.fields(SparsifyConfig):
        if f.name in ("regression", "layer_overrides", "progress", "cache_budget_bytes",
                      "layers", "max_batches"):
            continue
        assert getattr(cfg, f.name) == getattr(engine, f.name), f.name
    assert PruneSection().setting() == RegressionConfig()


def test_recovery_section_is_recovery_config() -> None:
    fields = {f.name for f in dataclasses.fields(RecoveryConfig)}
    assert set(RecoverySection.model_fields) == fields - {"bn_batches"}  # bn_batches: code only
    assert RecoveryConfig(**RecoverySection().model_dump()) == RecoveryConfig()
