"""The single-model jobs behind ``entropic-nas train`` and ``entropic-nas prune``."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from torch import nn

import pruning
import search_spaces
from search_spaces import ArchSpec

from .checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, RunConfig
from .plots import plot_history, plot_widths
from .train import evaluate, train
from .trial import (
    base_spec,
    calib_loader,
    load_data,
    measure_model,
    sparsify_config,
    train_config,
    trial_budget,
)

console = Console(stderr=True, soft_wrap=True)  # log lines are never broken mid-sentence


def _write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def run_train(cfg: RunConfig, out_dir: Path, *, arch: Path | None = None, resume: bool = True,
              progress: bool = True) -> dict[str, Any]:
    """Train ``cfg``'s model (or the architecture in ``arch``) from scratch.

    Writes ``model.safetensors`` + ``model.json`` (checkpoint), ``metrics.json``,
    ``history.csv`` and ``curves.png`` under ``out_dir``; an interrupted run resumes from
    its last finished epoch (``out_dir/state``).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(cfg.to_yaml())
    loaders = load_data(cfg)
    spec = ArchSpec.load(arch) if arch else base_spec(cfg, loaders)
    if tuple(spec.input_shape) != tuple(loaders.input_shape):
        raise ValueError(
            f"arch input_shape {tuple(spec.input_shape)} does not match dataset "
            f"{cfg.data.name!r} input shape {tuple(loaders.input_shape)}"
        )
    import torch

    torch.manual_seed(cfg.train.seed)
    model = search_spaces.build(spec)
    t0 = time.perf_counter()
    result = train(model, loaders, train_config(cfg.train, progress=progress),
                   checkpoint_dir=out_dir / "state", resume=resume, spec=spec,
                   evaluate_test=True)
    metrics = measure_model(model, tuple(loaders.input_shape), latency=True)
    summary = {
        "family": spec.family,
        "dataset": cfg.data.name,
        "val_acc": result.val_acc,
        "test_acc": result.test_acc,
        "epochs": cfg.train.epochs,
        "seconds": time.perf_counter() - t0,
        "seconds_per_epoch": result.seconds_per_epoch,
        **metrics,
    }
    save_checkpoint(out_dir / "model", model, spec, config=cfg.model_dump(mode="json"),
                    metrics=summary)
    _write_json(out_dir / "metrics.json", {"summary": summary, "history": result.history})
    _write_history_csv(out_dir / "history.csv", result.history)
    plot_history(result.history, out_dir / "curves.png")
    return summary


def _write_history_csv(path: Path, history: list[dict[str, Any]]) -> None:
    import csv

    if not history:
        return
    keys = list(history[0])
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(history)


def drop_weakest_blocks(model: nn.Module, calib: Any, family: str, n: int) -> dict[str, Any]:
    """``prune.drop_blocks``: the ``n`` removable residual blocks of ``family`` whose removal
    changes the output least on ``calib`` (:func:`pruning.block_drop_errors`) removed from a
    copy of ``model``; ``{"model", "dropped", "errors"}`` (the model itself when ``n`` is 0)."""
    if n == 0:
        return {"model": model, "dropped": [], "errors": {}}
    every = search_spaces.get_family(family).blocks
    gone = pruning.dropped_blocks(model, every)
    blocks = [b for b in every if b not in gone]
    if not blocks and not gone:
        raise ConfigError(f"prune.drop_blocks={n}: the model ({family}) has no removable "
                          "residual block; only torchvision / timm / own models have them")
    if n > len(blocks):
        raise ConfigError(f"prune.drop_blocks={n}: the model has {len(blocks)} removable "
                          f"blocks left ({', '.join(blocks) or 'none'}"
                          + (f"; {', '.join(gone)} already removed" if gone else "") + ")")
    errors = pruning.block_drop_errors(model, calib, blocks)
    weakest = set(sorted(blocks, key=lambda b: errors[b])[:n])
    dropped = [b for b in blocks if b in weakest]  # in the model's order
    console.print(f"depth: removing {n} of {len(blocks)} residual blocks: " + ", ".join(
        f"{b} (output error {errors[b]:.3g})" for b in dropped))
    return {"model": pruning.drop_blocks(model, dropped), "dropped": dropped, "errors": errors}


def run_prune(cfg: RunConfig, checkpoint: Path, out_dir: Path, *, finetune_epochs: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Sparsify a trained checkpoint with ``cfg.prune``; optionally fine-tune it.

    Writes the pruned checkpoint (``pruned.*``), ``arch.json``, ``report.json``,
    ``report.txt`` (table) and ``widths.png`` under ``out_dir``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    loaders = load_data(cfg)
    ckpt = load_checkpoint(checkpoint)
    if ckpt.spec is None:
        raise ValueError(f"{checkpoint}: checkpoint has no arch spec; cannot prune it")
    if tuple(ckpt.spec.input_shape) != tuple(loaders.input_shape):
        raise ValueError(
            f"{checkpoint}: model input {tuple(ckpt.spec.input_shape)} does not match dataset "
            f"{cfg.data.name!r} {tuple(loaders.input_shape)}"
        )
    model = ckpt.model
    device = next(model.parameters()).device
    acc_before = evaluate(model, loaders.val or loaders.test, device=device)[1]
    calib = calib_loader(cfg, loaders)
    t0 = time.perf_counter()
    depth = drop_weakest_blocks(model, calib, ckpt.spec.family, cfg.prune.drop_blocks)
    try:
        # a target's ratio is of the model as given, removed blocks included
        budget = (trial_budget(cfg, measure_model(model, tuple(loaders.input_shape),
                                                  latency=False), search=False)
                  if depth["dropped"] else cfg.budget(search=False))
        result = pruning.sparsify(depth["model"], calib,
                                  sparsify_config(cfg.prune, progress=progress),
                                  budget=budget,
                                  **(cfg.prune.selection_kwargs() if budget is not None else {}))
    except pruning.BudgetError as exc:  # unreachable budget: raised before any data pass
        raise ConfigError(f"{cfg.name}: {exc}") from None
    sparsify_s = time.perf_counter() - t0
    pruned = result.model
    spec = search_spaces.spec_from_model(pruned)
    shape = tuple(loaders.input_shape)
    before = measure_model(model, shape, latency=False)
    after = measure_model(pruned, shape, latency=False)
    summary: dict[str, Any] = {
        "checkpoint": str(checkpoint),
        "widths_before": dict(ckpt.spec.widths),
        "widths_after": dict(spec.widths),
        "before": before,
        "after": after,
        "param_sparsity": 1 - after["prunable_params"] / before["prunable_params"],
        "macs_ratio": after["macs"] / before["macs"],
        "params_ratio": after["params"] / before["params"],
        "budget": result.budget,
        "val_acc_before": acc_before,
        "val_acc_pruned": evaluate(pruned, loaders.val or loaders.test, device=device)[1],
        "sparsify_seconds": sparsify_s,
        "engine": result.engine,
        "dropped_blocks": depth["dropped"],
        "block_errors": depth["errors"],
    }
    if cfg.recovery.mode != "none":
        from .recovery import RecoveryConfig, recover

        rec = recover(pruned, model, loaders.train, RecoveryConfig(**cfg.recovery.model_dump()),
                      val_loader=loaders.val, device=device)
        summary["recovery"] = rec
        guarded = rec["val_acc_before"] is not None  # recover evaluated val already
        summary["val_acc_recovered"] = (
            (rec["val_acc_before"] if rec["kept"] == "before" else rec["val_acc_after"])
            if guarded else evaluate(pruned, loaders.val or loaders.test, device=device)[1])
        console.print(f"recovery {rec['mode']} ({rec['steps']} steps, {rec['seconds']:.1f} s): "
                      f"val acc {summary['val_acc_pruned']:.4f} -> "
                      f"{summary['val_acc_recovered']:.4f}"
                      + (" (undone: it lowered validation accuracy)"
                         if rec["kept"] == "before" else ""))
    epochs = cfg.finetune.epochs if finetune_epochs is None else finetune_epochs
    if epochs > 0:
        ft = train(pruned, loaders, train_config(cfg.finetune, progress=progress, epochs=epochs))
        summary["val_acc_finetuned"] = ft.val_acc
        summary["finetune_epochs"] = epochs
    save_checkpoint(out_dir / "pruned", pruned, spec, config=cfg.model_dump(mode="json"),
                    metrics=summary)
    spec.save(out_dir / "arch.json")
    layers = [r.to_dict() for r in result.report]
    _write_json(out_dir / "report.json", {"summary": summary, "layers": layers})
    table = layer_table(result.report, budget=result.budget)
    with (out_dir / "report.txt").open("w") as fh:
        Console(file=fh, width=140).print(table)
    console.print(table)
    plot_widths(spec, out_dir / "widths.png", title=f"{spec.family}: kept vs original widths")
    return summary


def layer_table(report: list[pruning.LayerReport], budget: dict[str, Any] | None = None) -> Table:
    """The per-layer report. After a budgeted pass the rows are its final pass: the widths
    the allocation chose, the plan pass's channels refitted, so there is no solver gap or
    iteration count to show (``–``)."""
    title = "entropic sparsification, per layer"
    if budget:
        title = (f"budgeted pass ({budget['field']}={budget['target']:g}), per layer: "
                 "allocated widths, refitted")
    table = Table(title=title)
    for col in ("layer", "kept/total", "gap", "rel.err (held-out)", "iters", "s", "note"):
        table.add_column(col, justify="right" if col not in ("layer", "note") else "left")
    for r in report:
        note = r.skipped_reason or ("gap < 10: unreliable" if r.gap_flag else "")
        solved = not math.isnan(r.gap) or r.iterations > 0
        table.add_row(r.layer, f"{r.kept}/{r.total}", f"{r.gap:.3g}" if solved else "–",
                      f"{r.rel_error_heldout:.2e}", str(r.iterations) if solved else "–",
                      f"{r.seconds:.2f}", note)
    return table


def budget_line(budget: dict[str, Any]) -> str:
    """One line on what a budgeted pass reached (``SparsifyResult.budget``)."""
    what = "latency" if budget["metric"] == "latency_ms" else budget["metric"]
    return (f"{budget['field']}={budget['target']:g}: {what} x{budget['reached_ratio']:.4f} of "
            f"the original (target x{budget['target_ratio']:.4f}), {budget['note']}")
