"""Model families described by architecture specs, datasets, and search knobs.

Public API::

    list_families(), default_spec(name), build(spec), spec_from_model(model),
    ArchSpec (save/load/to_dict/from_dict), register_family(ModelFamily(...))
"""

from __future__ import annotations

from . import airbench, lenet, resnet, small_cnn, vgg  # noqa: F401  (register the built-in families)
from .generic import ModelSource, family_for, left_alone, register_source, source_meta
from .spec import (
    ArchSpec,
    LayerGroup,
    ModelFamily,
    SpecError,
    build,
    default_spec,
    get_family,
    list_families,
    register_family,
    spec_from_model,
)

__all__ = [
    "ModelSource",
    "family_for",
    "left_alone",
    "register_source",
    "source_meta",
    "ArchSpec",
    "LayerGroup",
    "ModelFamily",
    "SpecError",
    "build",
    "default_spec",
    "get_family",
    "list_families",
    "register_family",
    "spec_from_model",
]
