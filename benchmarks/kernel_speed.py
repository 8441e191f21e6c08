"""The kernel-speed study in one command: check, profile, record.

Runs each section as its own process (so one failure, or a kernel that takes
the device down, does not lose the others, and each section's peak device
memory is its own), within a total time budget, and writes the summary after
every section so that a run cut short keeps what it measured:

1. ``gpu_check``: every Pallas kernel against its pure-jnp reference (values
   and gradients), timed against XLA.
2. ``hash_profile``: the hash encoding's launch sweep, backward variants and
   per-stage split, with the analytic roofline (``hash_profile.py``).
3. ``splat_profile``: the whole splatting frame and training step at the
   anchor and real-scale presets, per stage, with memory
   (``splat_profile.py``).

    python benchmarks/kernel_speed.py --preset=gpu --out_dir=DIR   # one GPU
    python benchmarks/kernel_speed.py --preset=tiny                # CPU

``tiny`` runs the Pallas kernels in the interpreter at toy sizes: it checks
the scripts and the kernels' values, and its timings mean nothing. Writes
``<out_dir>/kernel_speed_<backend>.json`` beside each section's own JSON
(default folder: ``benchmarks/results``). Needs only jax, numpy, absl and
``jaxsuite`` (none of ml-collections, matplotlib or the papers' extras), so it
runs where only JAX with CUDA is installed:
``pip install --no-deps --no-build-isolation -e .`` first.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import time

from absl import app, flags

HERE = pathlib.Path(__file__).resolve().parent

_PRESET = flags.DEFINE_enum("preset", "gpu", ["tiny", "gpu"], "Sizes to run.")
_SECTIONS = flags.DEFINE_list(
    "sections", ["gpu_check", "hash_profile", "splat_profile"], "Sections to run."
)
_BUDGET_S = flags.DEFINE_float(
    "budget_s", 540.0, "Total seconds; no section starts once it is spent."
)
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder (default: results/).")


def section_command(name: str, preset: str, out: pathlib.Path) -> list[str]:
    """The command line of one section, writing its JSON to ``out``."""
    script = str(HERE / f"{name}.py")
    if name == "gpu_check":
        extra = ["--cpu_smoke"] if preset == "tiny" else []
        return [sys.executable, script, *extra, f"--out={out}"]
    return [sys.executable, script, f"--preset={preset}", f"--out={out}"]


def probe_device() -> dict:
    """Backend and device kind, asked of a child process.

    This process never starts a JAX backend itself: on a GPU it would hold
    most of the device memory the sections need.
    """
    code = (
        "import json, jax; d = jax.devices()[0]; print(json.dumps("
        "{'backend': jax.default_backend(), 'device_kind': d.device_kind, "
        "'jax': jax.__version__, 'device_count': jax.device_count()}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_section(
    name: str, preset: str, out_dir: pathlib.Path, backend: str, timeout: float
) -> dict:
    """Runs one section; returns its status, wall time, output tail and JSON."""
    out = out_dir / f"{name}_{backend}.json"
    out.unlink(missing_ok=True)
    cmd = section_command(name, preset, out)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=HERE.parent
        )
        status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
        log = proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        status = f"timed out after {timeout:.0f} s"
        log = "".join(
            s.decode() if isinstance(s, bytes) else (s or "")
            for s in (e.stdout, e.stderr)
        )
    row = {
        "section": name,
        "command": " ".join(cmd[1:]),
        "status": status,
        "wall_s": round(time.perf_counter() - start, 2),
        "log_tail": log[-6000:],
        "result": json.loads(out.read_text()) if out.exists() else None,
    }
    print(f"[{name}] {status} in {row['wall_s']} s", flush=True)
    if status != "ok":
        print(row["log_tail"][-3000:], flush=True)
    return row


def main(argv) -> int:
    del argv
    out_dir = pathlib.Path(_OUT_DIR.value or HERE / "results")
    out_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.perf_counter() + _BUDGET_S.value
    env = probe_device()
    summary_path = out_dir / f"kernel_speed_{env['backend']}.json"
    summary = {
        "benchmark": "kernel_speed",
        "preset": _PRESET.value,
        "env": env,
        "sections": [],
    }
    print(f"device: {env['device_kind']} ({env['backend']})", flush=True)
    for name in _SECTIONS.value:
        left = deadline - time.perf_counter()
        if left < 10:
            summary["sections"].append({"section": name, "status": "not run: budget"})
            continue
        summary["sections"].append(
            run_section(name, _PRESET.value, out_dir, env["backend"], left)
        )
        summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    summary_path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {summary_path}")
    return 0 if all(s["status"] == "ok" for s in summary["sections"]) else 1


if __name__ == "__main__":
    app.run(main)
