"""Pick a trial from a finished search and export it as a standalone model.

``export_trial`` writes, into one directory:

- ``arch.json`` - the :class:`~search_spaces.spec.ArchSpec` (rebuild with ``build(spec)``),
- ``weights.safetensors`` - the trial's fine-tuned state dict (spec JSON in the metadata),
- ``model.onnx`` - a single-file ONNX graph with a dynamic batch axis, checked with
  ``onnx.checker`` (if export fails, the other files are still written and the card says why),
- ``MODEL_CARD.md`` - objectives, widths per layer vs the family default, fine-tuned vs
  trained-from-scratch accuracy when the trial measured both, and how to load / retrain it.

The trial's model is obtained through the ``load_model(record) -> (model, spec)`` argument
(normally reading ``record.attrs["checkpoint"]`` with ``nas.checkpoint.load_checkpoint``), so
this module does not depend on the checkpoint format.

Example:
    >>> rec = pick_trial(records, objectives, "macs<=200k")
    >>> export_trial(rec, "runs/x/export", load_model=load_from_checkpoint, objectives=objectives)
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nas.pareto import knee_point
from nas.search_types import Objective, TrialRecord
from search_spaces import ArchSpec, get_family

__all__ = ["ExportResult", "export_trial", "load_export", "normalise", "parse_quantity",
           "pick_trial", "preprocessing_for"]

LoadModelFn = Callable[[TrialRecord], tuple[nn.Module, ArchSpec]]

_SUFFIXES = {"": 1.0, "k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "g": 1e9, "G": 1e9, "t": 1e12,
             "T": 1e12}
RULE_HELP = ("'max-acc', 'knee', 'max-NAME', 'min-NAME', 'NAME<=X' or 'NAME>=X' "
              "(X like 2e5, 200k, 0.2M)")


def parse_quantity(text: str) -> float:
    """``"2e5"``, ``"200k"``, ``"0.2M"``, ``"1.5G"``, ``"200_000"`` -> float."""
    m = re.fullmatch(r"\s*([-+]?(?:\d[\d_]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*([kKmMgGtT]?)\s*",
                     text)
    if not m:
        raise ValueError(f"{text!r} is not a number like 2e5, 200k or 0.2M")
    return float(m.group(1).replace("_", "")) * _SUFFIXES[m.group(2)]


def _accuracy_objective(objectives: Sequence[Objective]) -> Objective:
    by_name = {o.name: o for o in objectives}
    for name in ("accuracy", "acc", "acc_ft", "top1"):
        if name in by_name:
            return by_name[name]
    for o in objectives:
        if o.direction == "maximize":
            return o
    raise ValueError("no objective is maximised, so there is no accuracy to pick by")


def _metric(record: TrialRecord, name: str) -> float | None:
    v = record.values.get(name, record.attrs.get(name))
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _best(records: Sequence[TrialRecord], obj: Objective, objectives: Sequence[Objective]
          ) -> TrialRecord:
    """Best by ``obj``; ties go to the record that is best on the other objectives in turn."""
    def key(r: TrialRecord) -> tuple[float, ...]:
        keys = []
        for o in [obj, *[x for x in objectives if x is not obj]]:
            v = _metric(r, o.name)
            v = math.inf if v is None or math.isnan(v) else (-v if o.direction == "maximize" else v)
            keys.append(v)
        return (*keys, r.number)

    return min(records, key=key)


def pick_trial(records: Sequence[TrialRecord], objectives: Sequence[Objective],
               rule: str) -> TrialRecord:
    """Choose one COMPLETE trial by ``rule``.

    Rules:
        ``max-acc``: highest accuracy (the ``accuracy`` objective, else the first maximised);
            ties go to the cheaper trial.
        ``knee``: the knee of the Pareto front (see :func:`nas.pareto.knee_point`).
        ``max-NAME`` / ``min-NAME``: best by an objective or numeric attribute.
        ``NAME<=X`` / ``NAME>=X``: the most accurate trial within a budget, e.g. ``macs<=200k``;
            NAME is an objective or numeric attribute, X a number like ``2e5``, ``200k``, ``0.2M``.

    Raises:
        ValueError: unknown rule, or no trial satisfies it (the message names the rule).
    """
    rule = rule.strip()
    done = [r for r in records if r.state == "COMPLETE" and r.values]
    if not done:
        raise ValueError(f"rule {rule!r}: the search has no complete trial to pick from")
    names = {o.name for o in objectives}
    if rule in ("max-acc", "max-accuracy"):
        return _best(done, _accuracy_objective(objectives), objectives)
    if rule == "knee":
        pts = [[r.values[o.name] for o in objectives] for r in done]
        k = knee_point(pts, [o.direction for o in objectives])
        if k is None:
            raise ValueError(f"rule {rule!r}: no trial has finite objective values")
        return done[k]
    m = re.fullmatch(r"(max|min)-(\w+)", rule)
    if m:
        name = m.group(2)
        _check_metric(done, name, names, rule)
        goal = Objective(name, "maximize" if m.group(1) == "max" else "minimize")
        return _best(done, goal, objectives)
    m = re.fullmatch(r"(\w+)\s*(<=|>=)\s*(.+)", rule)
    if m:
        name, op, raw = m.groups()
        try:
            limit = parse_quantity(raw)
        except ValueError as exc:
            raise ValueError(f"rule {rule!r}: {exc}") from None
        _check_metric(done, name, names, rule)
        ok = [r for r in done if (v := _metric(r, name)) is not None
              and (v <= limit if op == "<=" else v >= limit)]
        if not ok:
            vals = [(v, r.number) for r in done if (v := _metric(r, name)) is not None]
            best_v, best_n = (min if op == "<=" else max)(vals)
            raise ValueError(
                f"rule {rule!r}: no complete trial has {name} {op} {limit:,.6g}; the "
                f"{'smallest' if op == '<=' else 'largest'} is {best_v:,.6g} (trial {best_n})"
            )
        return _best(ok, _accuracy_objective(objectives), objectives)
    raise ValueError(f"unknown pick rule {rule!r}; use {RULE_HELP}")


def _check_metric(done: Sequence[TrialRecord], name: str, names: set[str], rule: str) -> None:
    if name in names or any(_metric(r, name) is not None for r in done):
        return
    raise ValueError(f"rule {rule!r}: {name!r} is neither an objective ({sorted(names)}) nor a "
                     "numeric attribute of the trials")


# -- input preprocessing ----------------------------------------------------------------------------
def preprocessing_for(data: Any) -> dict[str, Any]:
    """What an input must go through before the model, for a config's ``data`` section.

    ``x = (pixels * scale - mean) / std`` per channel, on an ``NCHW`` float32 tensor;
    ``pixels`` are the raw values of the dataset (0..255 for MNIST / CIFAR / image files, 0..16
    for scikit-learn's digits). ``synthetic`` inputs are already standardised (identity).
    """
    from search_spaces import data as d

    name = getattr(data, "name", str(data))
    channels = "grayscale"
    mean: Sequence[float]
    std: Sequence[float]
    if name in ("mnist", "mnist5k"):
        scale, mean, std = 1 / 255, d.MNIST_MEAN, d.MNIST_STD
    elif name == "digits":
        scale, mean, std = 1 / 16, d.DIGITS_MEAN, d.DIGITS_STD
    elif name in ("cifar10", "cifar10_jpeg", "imagefolder"):
        scale, channels = 1 / 255, "RGB"
        mean = getattr(data, "mean", None) or d.CIFAR10_MEAN
        std = getattr(data, "std", None) or d.CIFAR10_STD
    elif name == "synthetic":
        return {"dataset": name, "layout": "NCHW", "dtype": "float32", "scale": 1.0,
                "mean": None, "std": None, "channels": None,
                "formula": "identity: synthetic inputs are already standardised"}
    else:
        return {"dataset": name, "layout": "NCHW", "dtype": "float32",
                "formula": f"unknown for dataset {name!r}: see search_spaces/data.py"}
    out: dict[str, Any] = {
        "dataset": name, "layout": "NCHW", "dtype": "float32", "channels": channels,
        "scale": scale, "mean": [float(v) for v in mean], "std": [float(v) for v in std],
        "formula": "x = (pixels * scale - mean[c]) / std[c] for each channel c",
    }
    size = getattr(data, "image_size", None)
    if name == "imagefolder" and size:
        out["resize"] = f"resize the shorter side to {size}, then center-crop {size}x{size}"
    return out


def normalise(pixels: Any, preprocessing: dict[str, Any]) -> Any:
    """Apply :func:`preprocessing_for`'s recipe to a NCHW array / tensor of raw pixels."""
    import numpy as np

    x = np.asarray(pixels, dtype=np.float32) * np.float32(preprocessing.get("scale", 1.0))
    if preprocessing.get("mean") is not None:
        mean = np.asarray(preprocessing["mean"], dtype=np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(preprocessing["std"], dtype=np.float32).reshape(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def _onnx_metadata(path: Path, preprocessing: dict[str, Any], spec: ArchSpec) -> None:
    """Record the preprocessing in the ONNX file's metadata_props (weights untouched)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    props = {"preprocessing": json.dumps(preprocessing), "layout": preprocessing.get("layout"),
             "mean": json.dumps(preprocessing.get("mean")),
             "std": json.dumps(preprocessing.get("std")),
             "scale": json.dumps(preprocessing.get("scale")),
             "input_shape": json.dumps([None, *spec.input_shape]),
             "arch_spec": spec.to_json()}
    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


# -- export -------------------------------------------------------------------------------------------
@dataclass
class ExportResult:
    """What :func:`export_trial` wrote. ``onnx`` is None when ONNX export failed (see
    ``onnx_error``)."""

    out_dir: Path
    arch: Path
    weights: Path
    card: Path
    onnx: Path | None = None
    onnx_error: str | None = None
    onnx_exporter: str | None = None
    notes: list[str] = field(default_factory=list)


def save_weights(model: nn.Module, path: Path, spec: ArchSpec | None = None) -> Path:
    """State dict as safetensors (contiguous CPU copies, so tied / strided tensors save too)."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {"format": "pt"}
    if spec is not None:
        meta["arch_spec"] = json.dumps(spec.to_dict(), separators=(",", ":"))
    save_file(tensors, str(path), metadata=meta)
    from nas.jsonio import respect_umask

    respect_umask(path)
    return path


def export_onnx(model: nn.Module, spec: ArchSpec, path: Path, *,
                verify_max_params: int = 2_000_000) -> tuple[str, bool]:
    """Export to a single ``.onnx`` file with a dynamic batch axis, check and verify it.

    Tries the torch.export-based exporter (default since torch 2.9; needs onnxscript), first
    with a dynamic batch, then a static one, then the TorchScript exporter. Each result must
    pass ``onnx.checker``; models up to ``verify_max_params`` parameters are also run with
    ``onnx.reference`` and compared with PyTorch (larger ones would take too long without
    onnxruntime). Returns ``(exporter, verified)``; raises RuntimeError listing every attempt.
    """
    import onnx

    x = torch.randn(2, *spec.input_shape)
    n_params = sum(p.numel() for p in model.parameters())
    big = sum(p.numel() * p.element_size() for p in model.parameters()) > 1.5 * 2**30
    attempts: list[tuple[str, bool, dict[str, Any]]] = [
        ("dynamo", True, {"dynamo": True,
                          "dynamic_shapes": ({0: torch.export.Dim("batch", min=1)},)}),
        ("dynamo-static", False, {"dynamo": True}),
        ("torchscript", True, {"dynamo": False, "dynamic_axes": {"input": {0: "batch"},
                                                                 "logits": {0: "batch"}}}),
    ]
    errors = []
    for name, dynamic, kwargs in attempts:
        if kwargs["dynamo"]:
            kwargs |= {"external_data": big, "verbose": False}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (x,), str(path), input_names=["input"],
                                  output_names=["logits"], **kwargs)
            onnx.checker.check_model(str(path), full_check=True)
            verified = n_params <= verify_max_params
            if verified:
                _verify_onnx(model, spec, path, batch=3 if dynamic else 2)
            return name, verified
        except Exception as exc:  # noqa: BLE001 - try the next exporter, report all
            errors.append(f"{name}: {_root_cause(exc)}")
            for stale in (path, path.with_name(path.name + ".data")):
                stale.unlink(missing_ok=True)
    raise RuntimeError("; ".join(errors))


def _verify_onnx(model: nn.Module, spec: ArchSpec, path: Path, *, batch: int) -> None:
    import onnx
    from onnx.reference import ReferenceEvaluator

    x = torch.randn(batch, *spec.input_shape)
    with torch.no_grad():
        expected = model(x).detach().numpy()
    outputs: Any = ReferenceEvaluator(onnx.load(str(path))).run(None, {"input": x.numpy()})
    got = outputs[0]
    err = float(abs(got - expected).max()) if got.shape == expected.shape else math.inf
    if not err <= 1e-3 * max(1.0, float(abs(expected).max())):
        raise RuntimeError(f"the ONNX graph's output differs from PyTorch's (max |diff| {err:.3g},"
                           f" shapes {got.shape} vs {expected.shape})")


def _root_cause(exc: BaseException) -> str:
    root = exc
    while root.__cause__ is not None:
        root = root.__cause__
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(root)).strip()
    first = (text.splitlines() or [""])[0][:300]
    return f"{type(root).__name__}: {first}"


def export_trial(record: TrialRecord, out_dir: str | Path, *, load_model: LoadModelFn,
                 objectives: Sequence[Objective] | None = None, onnx: bool = True,
                 study_name: str | None = None,
                 preprocessing: dict[str, Any] | None = None,
                 baselines: Sequence[Mapping[str, Any]] = (),
                 verdict: Mapping[str, Any] | None = None) -> ExportResult:
    """Write ``arch.json``, ``weights.safetensors``, ``model.onnx`` and ``MODEL_CARD.md``.

    Args:
        record: The trial to export (see :func:`pick_trial`).
        out_dir: Target directory (created).
        load_model: ``load_model(record) -> (model, spec)``: the trial's fine-tuned model.
        objectives: The search objectives (for the card); default: the record's value names.
        onnx: Set False to skip the ONNX file.
        study_name: Named in the card.
        preprocessing: The input recipe (:func:`preprocessing_for`); recorded in
            ``arch.json`` (``meta.preprocessing``), the card and the ONNX metadata.
        baselines: The search's reference models (the unpruned one, the uniform net of equal
            MACs: ``label``, ``accuracy``, ``macs``, ``params``), shown in the card beside
            this architecture.
        verdict: The search's verdict on this trial (``nas.search.verdict``), quoted in the
            card.
    """
    import dataclasses

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model, spec = load_model(record)
    model = model.to("cpu").eval()
    from nas.checkpoint import check_finite

    check_finite(model.state_dict(), source=f"trial #{record.number}'s model")
    if preprocessing is not None:
        spec = dataclasses.replace(spec, meta={**spec.meta, "preprocessing": preprocessing})
    from search_spaces import source_meta

    source = source_meta(spec.family)  # a torchvision / timm / factory model: where it came from
    if source is not None:
        spec = dataclasses.replace(spec, meta={**spec.meta, "source": source})
    res = ExportResult(out, spec.save(out / "arch.json"),
                       save_weights(model, out / "weights.safetensors", spec), out / "MODEL_CARD.md")
    from nas.extras import hint, installed

    if onnx and not installed("onnx"):
        res.onnx_error = f"onnx is not installed ({hint('onnx')})"
    elif onnx:
        try:
            res.onnx_exporter, verified = export_onnx(model, spec, out / "model.onnx")
            res.onnx = out / "model.onnx"
            if preprocessing is not None:
                _onnx_metadata(res.onnx, preprocessing, spec)
            if not verified:
                res.notes.append("model.onnx passed onnx.checker but was not run (too big for "
                                 "onnx.reference; check it with onnxruntime)")
        except Exception as exc:  # noqa: BLE001 - the rest of the export stands without ONNX
            res.onnx_error = f"ONNX export failed: {exc}"
    objectives = list(objectives or [Objective(k, "maximize" if "acc" in k else "minimize")
                                     for k in record.values])
    res.card.write_text(model_card(record, spec, model, objectives, res, study_name=study_name,
                                   baselines=baselines, verdict=verdict))
    return res


# -- model card ---------------------------------------------------------------------------------------
def _fmt(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, int) or float(v).is_integer() and abs(v) >= 1000:
        return f"{int(v):,}"
    return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"


# where a trial records its pruned + fine-tuned accuracy (older records used the others)
_FINETUNED = ("acc_finetuned", "acc_ft", "accuracy_finetuned")


def _baseline_lines(record: TrialRecord, n_params: int, baselines: Sequence[Mapping[str, Any]],
                    verdict: Mapping[str, Any] | None) -> list[str]:
    """The card's comparison: this architecture beside the unpruned model and the uniformly
    thinned net of equal MACs, and the search's verdict (empty without baselines)."""
    if not baselines and not verdict:
        return []

    def cell(v: Any) -> str:
        return _fmt(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "n/a"

    acc = _first_number(record, _FINETUNED)
    out = ["", "## Against the baselines", "",
           "| model | val accuracy | MACs | params |", "|---|---:|---:|---:|",
           f"| this architecture (pruned + fine-tuned) | {cell(acc)} | "
           f"{cell(record.attrs.get('macs'))} | {n_params:,} |"]
    out += [f"| {b.get('label', '?')} | {cell(b.get('accuracy'))} | {cell(b.get('macs'))} | "
            f"{cell(b.get('params'))} |" for b in baselines]
    if verdict and verdict.get("text"):
        n_val = verdict.get("n_val")
        out += ["", f"**Verdict** (validation split{f', {n_val:,} images' if n_val else ''}; "
                "differences of up to two images are a tie): " + str(verdict["text"])]
    return out


def model_card(record: TrialRecord, spec: ArchSpec, model: nn.Module,
               objectives: Sequence[Objective], res: ExportResult, *,
               study_name: str | None = None, baselines: Sequence[Mapping[str, Any]] = (),
               verdict: Mapping[str, Any] | None = None) -> str:
    fam = get_family(spec.family)
    n_params = sum(p.numel() for p in model.parameters())
    lines = [
        f"# {spec.family} - trial {record.number}" + (f" of `{study_name}`" if study_name else ""),
        "",
        f"Architecture found by entropic-nas: family `{spec.family}` (v{spec.family_version}), "
        f"input {tuple(spec.input_shape)}, {spec.num_classes} classes, {n_params:,} parameters.",
        "",
        "## Objectives",
        "",
        "| objective | value | goal |",
        "|---|---:|---|",
    ]
    for o in objectives:
        v = record.values.get(o.name)
        lines.append(f"| {o.name} | {_fmt(v) if v is not None else 'n/a'} | {o.direction} |")
    lines += _baseline_lines(record, n_params, baselines, verdict)

    pre = spec.meta.get("preprocessing")
    if isinstance(pre, dict):
        lines += ["", "## Input preprocessing", "",
                  f"Layout {pre.get('layout', 'NCHW')} {pre.get('dtype', 'float32')}, shape "
                  f"(N, {', '.join(map(str, spec.input_shape))}), "
                  f"{pre.get('channels') or 'as the dataset'}; dataset `{pre.get('dataset')}`.",
                  f"`{pre.get('formula')}`" + (
                      f" with scale = {pre['scale']:.6g}, mean = {pre['mean']}, "
                      f"std = {pre['std']}." if pre.get("mean") is not None else "."),
                  *([f"Before that: {pre['resize']}."] if pre.get("resize") else []),
                  "The same recipe is in `arch.json` (`meta.preprocessing`) and in the ONNX "
                  "file's metadata (`preprocessing`, `mean`, `std`, `scale`, `layout`)."]
    if isinstance(pre, dict) and pre.get("scale") is not None:
        lines += ["", "```python",
                  "import json, numpy as np, onnxruntime as ort",
                  "sess = ort.InferenceSession(\"model.onnx\")",
                  "meta = sess.get_modelmeta().custom_metadata_map",
                  "pre = json.loads(meta[\"preprocessing\"])",
                  "x = pixels.astype(np.float32) * pre[\"scale\"]   # pixels: (N, C, H, W)",
                  "if pre[\"mean\"] is not None:",
                  "    x = (x - np.array(pre[\"mean\"], np.float32)[None, :, None, None]) \\",
                  "        / np.array(pre[\"std\"], np.float32)[None, :, None, None]",
                  "logits = sess.run(None, {\"input\": x})[0]",
                  "```"]

    lines += ["", "## Widths per layer", "", "| layer | width | family default | kept |",
              "|---|---:|---:|---:|"]
    tot, tot_def = 0, 0
    for key, default in fam.default_widths.items():
        w = spec.widths[key]
        tot, tot_def = tot + w, tot_def + default
        lines.append(f"| {key} | {w} | {default} | {100.0 * w / default:.0f} % |")
    lines.append(f"| **all** | **{tot}** | **{tot_def}** | **{100.0 * tot / max(tot_def, 1):.0f} %** |")

    ft = _first_number(record, _FINETUNED)
    rows = [(label, _first_number(record, keys)) for label, keys in (
        ("pruned, before fine-tuning (val)", ("acc_pruned",)),
        ("pruned + fine-tuned (val)", _FINETUNED),
        ("pruned + fine-tuned (test)", ("test_acc_finetuned",)),
        ("same architecture from scratch (val)", ("acc_scratch", "accuracy_scratch")),
        ("from scratch, same epochs - Scratch-E (val)", ("acc_scratch_e",)),
        ("from scratch, same compute - Scratch-B (val)", ("acc_scratch_b",)),
    )]
    scratch = [v for label, v in rows if "scratch" in label.lower() and v is not None]
    if scratch:
        lines += ["", "## Pruned + fine-tuned vs trained from scratch", "",
                  "| training | accuracy |", "|---|---:|"]
        lines += [f"| {label} | {_fmt(v)} |" for label, v in rows if v is not None]
        if ft is not None:
            lines += ["", f"Fine-tuned minus best scratch: {ft - max(scratch):+.4f} (Liu et al., "
                      "ICLR 2019, found scratch training often matches fine-tuning of pruned "
                      "networks)."]

    metrics = {k: v for k, v in sorted(record.attrs.items())
               if isinstance(v, (int, float)) and not isinstance(v, bool)
               and k not in ("elapsed_s",)}
    if metrics:
        lines += ["", "## Other metrics of the trial", "", "| metric | value |", "|---|---:|"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in metrics.items()]

    lines += ["", "## Files", "",
              "- `arch.json` - the architecture spec (`ArchSpec`, format "
              f"v{spec.to_dict()['format_version']})",
              "- `weights.safetensors` - fine-tuned weights (state dict)"]
    if res.onnx is not None:
        lines.append(f"- `model.onnx` - ONNX graph, input `input` (N, {', '.join(map(str, spec.input_shape))}), "
                     f"output `logits`; exported with the {res.onnx_exporter} exporter, "
                     "checked with `onnx.checker`" + ("" if res.notes else
                                                      " and against PyTorch's output"))
    else:
        lines.append(f"- `model.onnx` - **not written**: {res.onnx_error}")
    lines += [
        *[f"- note: {n}" for n in res.notes],
        "", "## Use it", "",
        "```python",
        "from safetensors.torch import load_file",
        "from search_spaces import ArchSpec, build",
        "",
        "spec = ArchSpec.load(\"arch.json\")",
        "model = build(spec)",
        "model.load_state_dict(load_file(\"weights.safetensors\"))",
        "model.eval()",
        "```",
        "", "## Retrain", "",
        "Train the same architecture from scratch (or on other data), from this directory:",
        "",
        "```bash",
        *_retrain_command(res.out_dir),
        "```",
        "",
        f"Source: trial {record.number}" + "".join(
            f", {label} `{_relative(record.attrs[key], res.out_dir)}`"
            for key, label in (("trial_dir", "trial dir"), ("checkpoint", "checkpoint"))
            if record.attrs.get(key)) + ".",
        "",
    ]
    return "\n".join(lines)


def _relative(path: Any, out_dir: Path) -> str:
    """``path`` relative to the export directory (no absolute local paths in the card)."""
    try:
        return os.path.relpath(Path(path).resolve(), Path(out_dir).resolve())
    except ValueError:  # another drive (Windows)
        return Path(path).name


def _retrain_command(out_dir: Path) -> list[str]:
    """The card's retrain command, run from the export directory: with the search's config
    when the export sits in its run directory, else a named placeholder."""
    run_config = Path(out_dir).parent / "config.yaml"
    if run_config.is_file():
        return [f"entropic-nas train --config {_relative(run_config, out_dir)} --arch arch.json "
                "--out retrain"]
    return ["# CONFIG: the search's config.yaml (in its run directory)",
            "entropic-nas train --config CONFIG --arch arch.json --out retrain"]


def _first_number(record: TrialRecord, keys: Sequence[str]) -> float | None:
    for k in keys:
        v = record.values.get(k, record.attrs.get(k))
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
    return None


def load_export(out_dir: str | Path) -> tuple[nn.Module, ArchSpec]:
    """Rebuild an exported model from ``arch.json`` + ``weights.safetensors``."""
    from safetensors.torch import load_file

    from search_spaces import build

    out = Path(out_dir)
    spec = ArchSpec.load(out / "arch.json")
    model = build(spec)
    from nas.checkpoint import load_weights_strict

    load_weights_strict(model, load_file(str(out / "weights.safetensors")),
                        source=out / "weights.safetensors")
    return model.eval(), spec
