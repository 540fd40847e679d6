"""docs/results.md section of ``benchmarks.cifar_short``: one table over all its runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import fmt_eps, md_table


def _pct(v: Any) -> str:
    return "–" if v is None else f"{100 * float(v):.1f}"


def _cifar_verdict(pr: float | None, others: dict[str, float | None]) -> str:
    """One seed per arm: differences under 1 pt on a 2,000-image test subset are noise."""
    if pr is None:
        return "–"
    parts = []
    for name, v in others.items():
        if v is None:
            parts.append(f"{name} n/a")
            continue
        d = 100 * (v - pr)
        word = "≈" if abs(d) < CIFAR_NOISE_PT else ("better" if d > 0 else "worse")
        parts.append(f"{name} {word} ({d:+.1f})")
    return "; ".join(parts)


CIFAR_NOISE_PT = 1.0


def _sel(stage: dict[str, Any] | None) -> str:
    """A selection baseline at the entropic widths: accuracy before / after its fine-tune."""
    if not stage or not stage.get("done"):
        return "–"
    return f"{_pct(stage.get('test_acc_pruned'))} / {_pct(stage.get('test_acc'))}"


def render(runs: dict[str, dict[str, Any]], figdir: Path | None = None) -> str:
    """One table over all cifar_short_*.json runs (short CPU protocol, one seed each)."""
    out = ["## VGG-16 / ResNet-18 on CIFAR-10 (JPEG copy): short CPU protocol (superseded)\n",
           "**Superseded** by the fast-family head-to-head above (bases at ~91 % instead of "
           "~40 %); kept for the size, MAC and latency columns, which do not depend on the "
           "training. **Not the paper's protocol.** Each run pre-trains on a fixed subset of the CIFAR-10 "
           "JPEG copy (2,500-4,000 images, see Protocols) for 2 epochs on this 2-core CPU, so the base networks "
           "are far from converged (≈40 % test accuracy instead of ≈93 %): the accuracy "
           "columns compare the arms of one run with each other, never with the paper. The "
           "size, MAC and latency columns do not depend on the training and are comparable. "
           "One seed per arm; test accuracy on a fixed 2,000-image test subset (one image = "
           "0.05 pt; differences under 1 pt are called ≈). L1 / random + refit: the same "
           "widths with channels chosen by producer-filter L1 norm or at random, the same "
           "least-squares refit and the same fine-tune. Pruned + FT has had one more epoch "
           "of training than Scratch-E, so Scratch-B (about the same training compute) is the "
           "fair scratch arm.\n"]
    rows, proto_lines, dep_rows = [], [], []
    for name, d in sorted(runs.items()):
        st, cfg = d.get("stages", {}), d.get("config", {})
        need = ("pretrain", "metrics_original", "sparsify", "metrics_pruned")
        if not all(st.get(k, {}).get("done") for k in need):
            proto_lines.append(f"- `{name}`: incomplete (stages done: "
                               f"{', '.join(k for k, v in st.items() if v.get('done'))})")
            continue
        mo, mp, sp = st["metrics_original"], st["metrics_pruned"], st["sparsify"]
        fam = cfg.get("family", "?")
        mode = cfg.get("sparsify", {}).get("residual", "inner")
        label = fam + (f" ({mode})" if fam.startswith("resnet") else "")
        spars = 1 - mp["prunable_params"] / mo["prunable_params"]
        base = st["pretrain"].get("test_acc")
        ft = st.get("finetune", {}).get("test_acc")
        se = st.get("scratch_e", {}).get("test_acc")
        sb = st.get("scratch_b", {}).get("test_acc")
        un = st.get("uniform", {}).get("test_acc")
        b1o, b1p = mo["latency_b1"]["median_ms"], mp["latency_b1"]["median_ms"]
        bo, bp = mo["latency_b128"]["median_ms"], mp["latency_b128"]["median_ms"]
        rows.append([
            label, f"eps_E {fmt_eps(cfg['sparsify']['eps_E'])}, eps_L2 "
            f"{fmt_eps(cfg['sparsify']['eps_L2'])}", f"{100 * spars:.1f}",
            f"{mo['params']:,} → {mp['params']:,}", f"× {mp['macs'] / mo['macs']:.2f}",
            f"{mo['fp32_mib']:.1f} → {mp['fp32_mib']:.1f}", _pct(base), _pct(sp["test_acc_pruned"]),
            _pct(ft), _pct(se), _pct(sb) + (f" ({st['scratch_b']['epochs']} ep)" if sb else ""),
            _pct(un), _sel(st.get("l1_refit")), _sel(st.get("random_refit")),
            _cifar_verdict(ft, {"Scratch-E": se, "Scratch-B": sb, "uniform": un})])
        dep_rows.append([label, f"{mo['fp32_mib'] * 1.048576:.1f} → {mp['fp32_mib'] * 1.048576:.1f}",
                         f"× {mp['flops'] / mo['flops']:.2f}",
                         f"{b1o:.1f} → {b1p:.1f} ms ({100 * (b1p / b1o - 1):+.0f} %)",
                         f"{bo:.0f} → {bp:.0f} ms ({100 * (bp / bo - 1):+.0f} %)",
                         f"{sp['pass_seconds']:.0f} s"])
        pre, ftc = cfg.get("pretrain", {}), cfg.get("finetune", {})
        dat = cfg.get("data", {})
        reused = st["pretrain"].get("reused_from")
        proto_lines.append(
            f"- `{name}`: {fam}, residual mode {mode}; train subset {dat.get('train_subset')} "
            f"images, pre-training {pre.get('epochs')} epochs (lr {pre.get('lr')}, "
            f"{pre.get('schedule')}, batch {dat.get('batch_size')})"
            + (f", base reused from `{Path(reused['json']).name}`" if reused else "")
            + f"; fine-tune {ftc.get('epochs')} epoch (lr {ftc.get('lr')}); Scratch-E "
            f"{pre.get('epochs')} epochs, Scratch-B {st.get('scratch_b', {}).get('epochs', '–')}"
            f" epochs; calibration {cfg['sparsify'].get('calib_images')} images; "
            f"{d.get('environment', {}).get('device', 'cpu')}, "
            f"{d.get('environment', {}).get('torch_threads', '?')} torch threads; git "
            f"{str(d.get('environment', {}).get('git', '?'))[:20]}")
    out.append(md_table(["model", "eps", "param sparsity %", "params", "MACs", "fp32 MiB",
                         "base acc", "pruned (no FT)", "pruned + FT", "Scratch-E", "Scratch-B",
                         "uniform (equal MACs)", "L1 + refit (no FT / FT)",
                         "random + refit (no FT / FT)", "verdict (vs pruned + FT)"], rows))
    out.append("")
    out.append("**Deployment figures** (what the paper claims for VGG-16: memory 57.5 MB → "
               "6.5 MB, FLOPs halved, run time −40 %). MB = 10^6 bytes of fp32 weights; "
               "latency = median on this CPU, 1 torch thread, warm-up excluded.\n")
    out.append(md_table(["model", "fp32 MB", "FLOPs", "latency batch 1", "latency batch 128",
                         "sparsify pass (CPU, engine of that run)"], dep_rows))
    out.append("")
    out.append("Protocols:\n")
    out.extend(proto_lines)
    out.append("")
    return "\n".join(out) + "\n"
