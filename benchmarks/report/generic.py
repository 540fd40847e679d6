"""Generic rendering of any result JSON: ``tables`` entries, lists of records, scalars."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.report.fmt import ROOT, env_lines, fmt_num, md_table


def _flatten(d: dict[str, Any], prefix: str = "", depth: int = 0) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and depth < 1 and len(v) <= 12 and \
                all(not isinstance(x, (dict, list)) for x in v.values()):
            out.update(_flatten(v, key + ".", depth + 1))
        else:
            out[key] = v
    return out


def _records_table(records: list[dict[str, Any]], max_cols: int = 22, max_rows: int = 60) -> str:
    flat = [_flatten(r) for r in records if isinstance(r, dict)]
    cols = list(dict.fromkeys(k for r in flat for k in r))  # in the order they first appear
    # drop columns that hold only nested structures (they render as "{n keys}")
    cols = [c for c in cols if any(_is_scalar(r.get(c)) and r.get(c) is not None or
                                   (isinstance(r.get(c), list) and len(r[c]) <= 12 and
                                    all(_is_scalar(x) for x in r[c])) for r in flat)]
    dropped = len(cols) - max_cols
    cols = cols[:max_cols]
    rows = [[fmt_num(r.get(c)) for c in cols] for r in flat[:max_rows]]
    more = f"\n\n({len(flat) - max_rows} more rows in the JSON)" if len(flat) > max_rows else ""
    if dropped > 0:
        more += f"\n\n({dropped} more columns in the JSON)"
    return md_table(cols, rows) + more


def _is_scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def _dict_bullets(d: dict[str, Any], indent: int = 0, depth: int = 0,
                  max_items: int = 40) -> list[str]:
    """Nested bullets for a dict (two levels deep; lists of records become counts)."""
    pad = "  " * indent
    out = []
    for i, (k, v) in enumerate(d.items()):
        if i >= max_items:
            out.append(f"{pad}- ... ({len(d) - max_items} more keys)")
            break
        if _is_scalar(v):
            out.append(f"{pad}- {k}: {v if isinstance(v, str) else fmt_num(v)}")
        elif isinstance(v, list) and all(_is_scalar(x) for x in v):
            out.append(f"{pad}- {k}: {fmt_num(v)}")
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
    if isinstance(data, list):
        if data and all(isinstance(r, dict) for r in data):
            out.append(_records_table(data))
        else:
            out.append(fmt_num(data))
        return "\n".join(out) + "\n"
    if not isinstance(data, dict):
        return "\n".join(out + [fmt_num(data)]) + "\n"
    if "settings" in data and isinstance(data.get("rows"), dict):  # nas.experiment's layout
        data = {**{k: v for k, v in data.items() if k not in ("env", "settings", "rows")},
                "environment": data.get("env"), "config": data["settings"],
                "rows": list(data["rows"].values())}
    tables = data.get("tables")
    skip = {"tables", "env", "notes"} | ({"rows"} if isinstance(tables, list) else set())
    if isinstance(data.get("env"), dict):
        out.append(env_lines(data["env"], []))
    scalars = [(k, v) for k, v in data.items() if k not in skip and
               (_is_scalar(v) or (isinstance(v, list) and all(_is_scalar(x) for x in v)))]
    if scalars:
        out.extend(f"- **{k}**: {v if isinstance(v, str) else fmt_num(v)}" for k, v in scalars)
        out.append("")
    if isinstance(tables, list):
        for t in tables:
            if isinstance(t, dict) and "columns" in t and "rows" in t:
                out.append(f"**{t.get('title', '')}**\n")
                if t.get("caption"):
                    out.append(t["caption"] + "\n")
                out.append(md_table(t["columns"], [[fmt_num(c) if not isinstance(c, str) else c
                                                    for c in r] for r in t["rows"]]))
                out.append("")
    for k, v in data.items():
        if k in skip or any(k == sk for sk, _ in scalars):
            continue
        if isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out.append(f"**{k}** ({len(v)} records)\n")
            out.append(_records_table(v))
            out.append("")
        elif isinstance(v, dict) and v:
            sub = [(kk, vv) for kk, vv in v.items() if isinstance(vv, dict)]
            out.append(f"**{k}**\n")
            if sub and len(sub) == len(v) and all(
                    all(_is_scalar(x) for x in vv.values()) for _, vv in sub):
                out.append(_records_table([{"name": kk, **vv} for kk, vv in sub]))
            else:
                lines = _dict_bullets(v)
                if len(lines) > 30:
                    lines = lines[:30] + [f"- ... ({len(lines) - 30} more lines in the JSON)"]
                out.extend(lines)
            out.append("")
        elif isinstance(v, list):
            out.append(f"**{k}**: [{len(v)} items]\n")
    for _k, v in scalars:  # figures the benchmark wrote itself
        if isinstance(v, str) and v.endswith((".png", ".svg")) and (ROOT / v).is_file():
            target = ROOT / v
            docs = ROOT / "docs"
            rel = target.relative_to(docs).as_posix() if target.is_relative_to(docs) else \
                "../" + target.relative_to(ROOT).as_posix()
            out.append(f"![{Path(v).stem}]({rel})\n")
    notes = data.get("notes")
    if isinstance(notes, list) and notes:
        out.append("**notes**\n")
        out.extend(f"- {n}" for n in notes)
        out.append("")
    return "\n".join(out) + "\n"
