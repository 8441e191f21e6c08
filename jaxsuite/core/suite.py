"""Runs every paper's launcher in turn and writes one markdown report.

Each paper runs in its own process (``python -m launch.<name>``) with its own
workdir ``W/<name>`` and log ``W/<name>/log.txt``, so a crash, a hang past
the timeout or an exhausted memory in one paper cannot stop the others. A
paper whose launcher does not exist yet is listed as not implemented; nothing
is ever filled in for it. The registry of papers comes from the suite config,
so this module knows no paper.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from typing import Any

from absl import logging

from jaxsuite.core import metrics as metrics_lib

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


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows of dicts (keys of the first row are the columns) as a markdown table."""
    if not rows:
        return "(empty)\n"
    cols = list(rows[0])
    for row in rows[1:]:
        cols.extend(k for k in row if k not in cols)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in cols) + " |")
    return "\n".join(lines) + "\n"


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
                f"| {r['metric']} | {_fmt(r['value'])} | {r['unit']} |" for r in rows
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


def write_report(runs: Sequence[PaperRun], path: str, preset: str) -> str:
    """Writes the suite report (summary table, then one section per paper)."""
    report_dir = os.path.dirname(os.path.abspath(path))
    env = metrics_lib.env_info()
    lines = [
        "# jaxsuite report\n",
        f"Preset `{preset}` on {env['device_kind']} ({env['backend']}, "
        f"{env['device_count']} devices, {env['cpu_count']} CPU cores), "
        f"jax {env['jax']}, host {env['host']}.\n",
        markdown_table(
            [
                {
                    "paper": r.name,
                    "status": r.status,
                    "seconds": round(r.seconds, 1),
                    "verdict": (r.results or {}).get("verdict", ""),
                }
                for r in runs
            ]
        ),
    ]
    lines.extend(_section(r, report_dir) for r in runs)
    os.makedirs(report_dir, exist_ok=True)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return path


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
    logging.info("Report: %s", os.path.join(workdir, "report.md"))
    return runs
