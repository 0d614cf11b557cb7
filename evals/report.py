"""The result files of `refact-eval`: FILE (JSON) and FILE with a .md suffix (a table beside the published numbers)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

PERCENT_METRICS = ("pass@", "exact_match", "edit_similarity")  # leaf names shown in percent


def table_rows(tasks: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(task, metric path inside the task's result, parts joined by "/") for every number worth a row, in a stable
    order."""
    rows = []
    for task, result in tasks.items():
        if task in ("humaneval", "humaneval_chat"):
            rows += [(task, key) for key in result if key.startswith("pass@")]
        elif task == "humaneval_infill":
            rows += [(task, f"{order}/{m}") for order in ("psm", "spm") if order in result
                     for m in ("pass@1", "exact_match")]
        elif task == "heldout_fim":
            rows += [(task, "exact_match"), (task, "edit_similarity")]
        elif task == "perplexity":
            rows += [(task, "perplexity"), (task, "bits_per_byte"), (task, "loss")]
    return rows


def lookup(tree: Mapping[str, Any] | None, path: str) -> Any:
    node: Any = tree
    for part in path.split("/"):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def format_value(metric: str, value: Any, published: bool = False) -> str:
    if value is None:
        return "—"
    leaf = metric.split("/")[-1]
    if leaf.startswith(PERCENT_METRICS):
        return f"{value:.1f}" if published else f"{100 * value:.1f}"  # published numbers are given in percent
    return f"{value:.4g}"


def render_markdown(report: Mapping[str, Any]) -> str:
    published = report.get("published") or {}
    lines = [f"# refact-eval: {report['model']}", ""]
    if report.get("limit"):
        lines += [f"**Smoke run** (limit={report['limit']} per task): numbers are not comparable with the published "
                  f"ones.", ""]
    for warning in report.get("warnings") or []:
        lines += [f"**Warning:** {warning}", ""]
    lines += [f"| task | metric | this model | {published.get('name', 'published')} |", "|---|---|---:|---:|"]
    for task, metric in table_rows(report["tasks"]):
        ours = format_value(metric, lookup(report["tasks"][task], metric))
        theirs = format_value(metric, lookup(published.get(task), metric), published=True)
        lines.append(f"| {task} | {metric} | {ours} | {theirs} |")
    lines += ["", "Percent for pass@k, exact match and edit similarity. "
              f"Published: {published.get('source', 'docs/refact_1_6b.md')}; — where no number was published.", ""]
    details = []
    for task, result in report["tasks"].items():
        counts = {k: v for k, v in result.items() if isinstance(v, (int, str)) and not isinstance(v, bool)}
        details.append(f"- **{task}** ({report['timing_s'].get(task, 0):.1f} s): "
                       + ", ".join(f"{k} {v}" for k, v in counts.items()))
    gen = report.get("generation", {})
    lines += ["## Details", "", *details,
              f"- generation: {gen.get('new_tokens', 0)} tokens in {gen.get('seconds', 0):.1f} s "
              f"({gen.get('tokens_per_s', 0):.1f} tokens/s), batch size {gen.get('batch_size')}",
              f"- device {report.get('device')}, dtype {report.get('dtype')}, sandbox isolation "
              f"{json.dumps(report.get('sandbox_isolation') or {})}", ""]
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], out: str | Path) -> tuple[Path, Path]:
    """Write FILE (JSON) and the Markdown table beside it; returns both paths."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    md = out.with_suffix(".md")
    md.write_text(render_markdown(report))
    return out, md
