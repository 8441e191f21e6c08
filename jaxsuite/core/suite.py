"""Runs every paper's launcher in turn and writes one report (markdown + HTML).

Each paper runs in its own process (``python -m launch.<name>``) with its own
workdir ``W/<name>`` and log ``W/<name>/log.txt``, so a crash, a hang past
the timeout or an exhausted memory in one paper cannot stop the others. A
paper whose launcher does not exist yet is listed as not implemented; nothing
is ever filled in for it. The registry of papers comes from the suite config,
so this module knows no paper.

The report is ``W/report.md`` and the same content as one self-contained page,
``W/report.html`` (figures embedded), that a reader can open from the workdir
or attach to a review.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from jaxsuite.core import metrics as metrics_lib
from jaxsuite.core.tables import format_value, markdown_table

LOG_FILE = "log.txt"


@dataclasses.dataclass
class PaperRun:
    """The outcome of one paper's run."""

    name: str
    title: str
    claim: str
    status: str  # "ok", "failed", "timeout", "not implemented"
    workdir: str
    results: dict[str, Any] | None = None
    error: str = ""
    seconds: float = 0.0


def repo_root() -> str:
    """The folder holding ``launch/`` and ``configs/`` (the current directory
    when it has them, else the source checkout this package sits in)."""
    for root in (
        os.getcwd(),
        os.path.dirname(os.path.dirname(os.path.dirname(__file__))),
    ):
        if os.path.isdir(os.path.join(root, "launch")):
            return os.path.abspath(root)
    raise FileNotFoundError(
        "The suite runs launchers from the repository root (with launch/ and "
        "configs/); run it from there."
    )


def _tail(path: str, lines: int = 30) -> str:
    if not os.path.exists(path):
        return ""
    with open(path, errors="replace") as f:
        return "".join(f.readlines()[-lines:])


def run_paper(
    entry: Mapping[str, str],
    preset: str,
    workdir: str,
    *,
    timeout: float,
    rerun: bool = False,
    root: str | None = None,
) -> PaperRun:
    """Runs one paper's launcher in a subprocess and collects its results."""
    root = root or repo_root()
    name = entry["name"]
    out = PaperRun(name, entry["title"], entry["claim"], "not implemented", workdir)
    launcher = os.path.join(root, "launch", f"{name}.py")
    if not os.path.exists(launcher):
        return out
    results_path = os.path.join(workdir, metrics_lib.RESULTS_FILE)
    if not rerun and os.path.exists(results_path):
        results = metrics_lib.read_results(results_path)
        if results.get("preset") == preset:
            logging.info("%s: reusing %s", name, results_path)
            out.status, out.results = "ok", results
            out.seconds = results.get("wall_seconds", 0.0)
            return out
    os.makedirs(workdir, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        f"launch.{name}",
        f"--config=configs/{name}.py:{preset}",
        f"--workdir={workdir}",
    ]
    log_path = os.path.join(workdir, LOG_FILE)
    logging.info("%s: %s", name, " ".join(cmd))
    t0 = time.time()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.run(
                cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
            )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
    out.seconds = time.time() - t0
    if code is None:
        out.status = "timeout"
        out.error = f"Stopped after {timeout:.0f} s.\n" + _tail(log_path)
    elif code != 0:
        out.status = "failed"
        out.error = f"Exit code {code}.\n" + _tail(log_path)
    else:
        try:
            out.results = metrics_lib.read_results(results_path)
            out.status = "ok"
        except (OSError, ValueError) as e:
            out.status = "failed"
            out.error = f"No valid results.json: {e}\n" + _tail(log_path)
    logging.info("%s: %s in %.1f s", name, out.status, out.seconds)
    return out


def _section(run: PaperRun, report_dir: str) -> str:
    parts = [f"## {run.title} (`{run.name}`)\n", f"**Status:** {run.status}"]
    if run.seconds:
        parts[-1] += f" ({run.seconds:.1f} s)"
    parts[-1] += "\n"
    res = run.results or {}
    parts.append(f"**Paper's claim:** {res.get('claim', run.claim)}\n")
    if run.status == "not implemented":
        parts.append("No launcher yet; nothing was run.\n")
        return "\n".join(parts)
    if res:
        rows = [
            {"metric": k, "value": v.get("value"), "unit": v.get("unit", "")}
            for k, v in res.get("metrics", {}).items()
        ]
        parts.append("| measured here | value | unit |\n|---|---|---|")
        parts.append(
            "\n".join(
                f"| {r['metric']} | {format_value(r['value'])} | {r['unit']} |"
                for r in rows
            )
            + "\n"
        )
        parts.append(f"**Verdict:** {res.get('verdict', '')}\n")
        for table_name, table in res.get("tables", {}).items():
            if isinstance(table, list) and table and isinstance(table[0], Mapping):
                parts.append(f"*{table_name}*\n\n" + markdown_table(table))
        env = res.get("env", {})
        parts.append(
            f"Measured on {env.get('device_kind', '?')} ({env.get('backend', '?')}, "
            f"{env.get('device_count', '?')} devices), jax {env.get('jax', '?')}, "
            f"preset `{res.get('preset', '')}`.\n"
        )
    if run.error:
        parts.append("```\n" + run.error.strip() + "\n```\n")
    if os.path.isdir(run.workdir):
        for fname in sorted(os.listdir(run.workdir)):
            if fname.endswith(".png"):
                rel = os.path.relpath(os.path.join(run.workdir, fname), report_dir)
                parts.append(f"![{fname}]({rel})\n")
    return "\n".join(parts)


def first_sentence(text: str, limit: int = 240) -> str:
    """The first sentence of ``text`` (at most ``limit`` characters)."""
    text = " ".join(str(text).split())
    match = re.search(r"(?<=[.!?])\s", text)
    out = text[: match.start()] if match else text
    return out if len(out) <= limit else out[: limit - 1] + "\u2026"


def write_report(runs: Sequence[PaperRun], path: str, preset: str) -> str:
    """Writes the suite report (summary table, then one section per paper).

    ``path`` is the markdown file; an HTML page with the same content and the
    figures embedded is written beside it (same name, ``.html``).
    """
    report_dir = os.path.dirname(os.path.abspath(path))
    env = metrics_lib.env_info()
    lines = [
        "# jaxsuite report\n",
        f"Preset `{preset}` on {env['device_kind']} ({env['backend']}, "
        f"{env['device_count']} devices, {env['cpu_count']} CPU cores), "
        f"jax {env['jax']}, Python {env['python']}, {env['platform']}, "
        f"host {env['host']}. Total wall time "
        f"{sum(r.seconds for r in runs):.1f} s.\n",
        markdown_table(
            [
                {
                    "paper": r.name,
                    "paper's claim": r.claim,
                    "verdict here": first_sentence((r.results or {}).get("verdict", ""))
                    or r.status,
                    "status": r.status,
                    "seconds": round(r.seconds, 1),
                }
                for r in runs
            ]
        ),
    ]
    lines.extend(_section(r, report_dir) for r in runs)
    text = "\n".join(lines)
    os.makedirs(report_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    html_path = os.path.splitext(path)[0] + ".html"
    with open(html_path, "w") as f:
        f.write(markdown_to_html(text, report_dir, title="jaxsuite report"))
    return path


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto;
       padding: 0 1em; line-height: 1.45; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; vertical-align: top; }
th { background: #f3f3f3; }
img { max-width: 100%; border: 1px solid #eee; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; }
code { background: #f6f6f6; padding: 0 0.2em; }
h2 { border-top: 2px solid #ddd; padding-top: 0.8em; }
"""


def _embed_image(match: re.Match, base_dir: str) -> str:
    src = html.unescape(match.group(2))
    path = os.path.join(base_dir, src)
    if src.startswith(("data:", "http:", "https:")) or not os.path.isfile(path):
        return match.group(0)
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    ext = os.path.splitext(path)[1].lstrip(".").lower() or "png"
    mime = "image/svg+xml" if ext == "svg" else f"image/{ext}"
    return f'{match.group(1)}"data:{mime};base64,{data}"'


def markdown_to_html(text: str, base_dir: str, *, title: str) -> str:
    """A standalone HTML page from markdown, images under ``base_dir`` inlined."""
    import markdown

    body = markdown.markdown(text, extensions=["tables", "fenced_code"])
    body = re.sub(
        r'(<img[^>]*\ssrc=)"([^"]+)"', lambda m: _embed_image(m, base_dir), body
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def run(config: Any, workdir: str) -> list[PaperRun]:
    """Runs the configured papers and writes ``workdir/report.md``."""
    registry = {e["name"]: e for e in config.registry}
    unknown = [p for p in config.papers if p not in registry]
    if unknown:
        raise ValueError(f"Unknown papers {unknown}; known: {sorted(registry)}")
    runs = []
    for name in config.papers:
        runs.append(
            run_paper(
                registry[name],
                config.paper_preset,
                os.path.join(workdir, name),
                timeout=config.timeout_seconds,
                rerun=config.rerun,
            )
        )
        write_report(runs, os.path.join(workdir, "report.md"), config.paper_preset)
    logging.info(
        "Report: %s and %s",
        os.path.join(workdir, "report.md"),
        os.path.join(workdir, "report.html"),
    )
    return runs
