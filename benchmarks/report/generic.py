"""Generic rendering of any result JSON: ``tables`` entries, lists of records, scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import ROOT, env_lines, fmt_num, md_table


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _is_flat(v: Any, max_len: int | None = None) -> bool:
    """A scalar or a list of scalars (of at most ``max_len``)."""
    return _is_scalar(v) or (isinstance(v, list) and (max_len is None or len(v) <= max_len)
                             and all(_is_scalar(x) for x in v))


def _text(v: Any) -> str:
    return v if isinstance(v, str) else fmt_num(v)


def _flatten(d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with each small dict of plain values spread into ``key.subkey`` entries."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and len(v) <= 12 and \
                all(not isinstance(x, (dict, list)) for x in v.values()):
            out.update({f"{k}.{kk}": x for kk, x in v.items()})
        else:
            out[k] = v
    return out


def _records_table(records: list[dict[str, Any]], max_cols: int = 22, max_rows: int = 60) -> str:
    flat = [_flatten(r) for r in records if isinstance(r, dict)]
    # the columns in the order they first appear, less those that hold only nested structures
    # (they render as "{n keys}")
    cols = [c for c in dict.fromkeys(k for r in flat for k in r)
            if any(r.get(c) is not None and _is_flat(r.get(c), 12) for r in flat)]
    more = f"\n\n({len(flat) - max_rows} more rows in the JSON)" if len(flat) > max_rows else ""
    if len(cols) > max_cols:
        more += f"\n\n({len(cols) - max_cols} more columns in the JSON)"
    return md_table(cols[:max_cols], [[fmt_num(r.get(c)) for c in cols[:max_cols]]
                                      for r in flat[:max_rows]]) + more


def _dict_bullets(d: dict[str, Any], indent: int = 0, depth: int = 0,
                  max_items: int = 40) -> list[str]:
    """Nested bullets for a dict (two levels deep; lists of records become counts)."""
    pad = "  " * indent
    out = []
    for i, (k, v) in enumerate(d.items()):
        if i >= max_items:
            out.append(f"{pad}- ... ({len(d) - max_items} more keys)")
            break
        if _is_flat(v):
            out.append(f"{pad}- {k}: {_text(v)}")
        elif isinstance(v, dict) and depth < 2:
            out.append(f"{pad}- {k}:")
            out.extend(_dict_bullets(v, indent + 1, depth + 1, max_items))
        elif isinstance(v, list):
            out.append(f"{pad}- {k}: [{len(v)} items]")
        else:
            out.append(f"{pad}- {k}: {{{len(v)} keys}}")
    return out


def render_generic(data: Any, title: str, source: str) -> str:
    out = [f"## {title}\n", f"Source: `{source}` (rendered generically from its JSON).\n"]
    if isinstance(data, list) and data and all(isinstance(r, dict) for r in data):
        return "\n".join([*out, _records_table(data)]) + "\n"
    if not isinstance(data, dict):
        return "\n".join([*out, fmt_num(data)]) + "\n"
    if "settings" in data and isinstance(data.get("rows"), dict):  # nas.experiment's layout
        data = {**{k: v for k, v in data.items() if k not in ("env", "settings", "rows")},
                "environment": data.get("env"), "config": data["settings"],
                "rows": list(data["rows"].values())}
    tables = data.get("tables")
    skip = {"tables", "env", "notes"} | ({"rows"} if isinstance(tables, list) else set())
    if isinstance(data.get("env"), dict):
        out.append(env_lines(data["env"], []))
    scalars = {k: v for k, v in data.items() if k not in skip and _is_flat(v)}
    if scalars:
        out += [*(f"- **{k}**: {_text(v)}" for k, v in scalars.items()), ""]
    for t in tables if isinstance(tables, list) else []:
        if isinstance(t, dict) and "columns" in t and "rows" in t:
            out.append(f"**{t.get('title', '')}**\n")
            if t.get("caption"):
                out.append(t["caption"] + "\n")
            out += [md_table(t["columns"], [[_text(c) for c in r] for r in t["rows"]]), ""]
    for k, v in data.items():
        if k in skip or k in scalars:
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out += [f"**{k}** ({len(v)} records)\n", _records_table(v), ""]
        elif isinstance(v, dict) and v:
            out.append(f"**{k}**\n")
            if all(isinstance(x, dict) and all(_is_scalar(y) for y in x.values())
                   for x in v.values()):
                out.append(_records_table([{"name": kk, **vv} for kk, vv in v.items()]))
            else:
                lines = _dict_bullets(v)
                if len(lines) > 30:
                    lines = lines[:30] + [f"- ... ({len(lines) - 30} more lines in the JSON)"]
                out += lines
            out.append("")
        elif isinstance(v, list):
            out.append(f"**{k}**: [{len(v)} items]\n")
    for v in scalars.values():  # figures the benchmark wrote itself
        if isinstance(v, str) and v.endswith((".png", ".svg")) and (ROOT / v).is_file():
            target, docs = ROOT / v, ROOT / "docs"
            rel = target.relative_to(docs).as_posix() if target.is_relative_to(docs) else \
                "../" + target.relative_to(ROOT).as_posix()
            out.append(f"![{Path(v).stem}]({rel})\n")
    if isinstance(notes := data.get("notes"), list) and notes:
        out += ["**notes**\n", *(f"- {n}" for n in notes), ""]
    return "\n".join(out) + "\n"
