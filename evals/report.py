"""The result files of `refact-eval`: FILE (JSON) and FILE with a .md suffix (a table beside the published numbers)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from data_pipeline.atomic import temp_path, write_text_atomic

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


def samples_dir(out: str | Path) -> Path:
    """Where the per-sample JSONL files of the result FILE go: `<FILE stem>_samples/` beside it."""
    out = Path(out)
    return out.parent / f"{out.stem}_samples"


def check_output(out: str | Path) -> None:
    """Refuse a result FILE that could not be written, before anything runs (not after hours of generation)."""
    out = Path(out)
    if out.suffix == ".md":  # the JSON would be written, then overwritten by the table
        raise ValueError(f"out={out}: the Markdown table goes beside FILE with a .md suffix; give out=NAME.json")
    if out.is_dir():
        raise ValueError(f"out={out} is a directory; give a file name, e.g. out={out / 'eval_results.json'}")
    samples = samples_dir(out)
    if samples.exists() and not samples.is_dir():
        raise ValueError(f"out={out}: {samples}, where the per-sample files go, is a file; move it or give another "
                         f"out=FILE")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ValueError(f"out={out}: {out.parent} is a file, not a directory") from None
    except OSError as err:
        raise ValueError(f"out={out}: cannot create {out.parent} ({err.strerror})") from None
    if not os.access(out.parent, os.W_OK):
        raise ValueError(f"out={out}: {out.parent} is not writable")


def write_report(report: Mapping[str, Any], out: str | Path, samples: Path | None = None) -> tuple[Path, Path]:
    """Write FILE (JSON) and the Markdown table beside it, each atomically; the per-sample files written under the
    temporary directory `samples` (if any) replace `<stem>_samples/` as a whole, so that a rerun into the same FILE
    leaves no file of an earlier run's other tasks beside it. Returns both paths."""
    out = Path(out)
    final = samples_dir(out)
    if final.is_dir():
        shutil.rmtree(final)
    if samples is not None and samples.is_dir():
        os.replace(samples, final)
    write_text_atomic(out, json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    md = out.with_suffix(".md")
    write_text_atomic(md, render_markdown(report))
    return out, md


def pending_samples_dir(out: str | Path) -> Path:
    """The hidden directory the tasks write their per-sample files to until `write_report` puts it in place."""
    pending = temp_path(samples_dir(out))
    shutil.rmtree(pending, ignore_errors=True)  # left by a killed run of a process with our pid
    return pending
