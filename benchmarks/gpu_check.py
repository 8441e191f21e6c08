"""Check every Pallas kernel against its reference and time it against plain XLA.

For each registered kernel: run ``implementation='pallas'`` (compiled on a GPU,
``interpret=True`` with ``--cpu_smoke``) and ``implementation='reference'`` on
the same fresh random inputs, compare the outputs and the gradients (one VJP
with a random cotangent) within the kernel's tolerance, and time forward and
forward+backward of both. Prints a table, writes JSON and exits non-zero if any
check fails.

    python benchmarks/gpu_check.py              # on a CUDA machine, < 5 min
    python benchmarks/gpu_check.py --cpu_smoke  # tiny sizes, interpreter, CPU

Without a GPU the smoke mode is switched on automatically. Needs only jax,
numpy, absl and ``jaxsuite.kernels``; if jaxsuite is not installed, the
repository's ``kernels/`` folder is imported under that name.

Adding a kernel: write a function ``make(smoke: bool) -> KernelCheck`` and
decorate it with ``@register("<op>")``.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import json
import pathlib
import sys
import time
import traceback
import types
from collections.abc import Callable
from typing import Any

import bench_util
import jax
import numpy as np
from absl import app, flags

ROOT = pathlib.Path(__file__).resolve().parents[1]

_CPU_SMOKE = flags.DEFINE_bool("cpu_smoke", False, "Tiny sizes, Pallas interpreted.")
_KERNELS = flags.DEFINE_list("kernels", [], "Kernels to check (default: all).")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed calls per measurement.")
_OUT = flags.DEFINE_string("out", None, "JSON path (default: results/).")


def _import_kernels() -> None:
    """Make ``jaxsuite.kernels`` importable from a bare checkout."""
    try:
        importlib.import_module("jaxsuite.kernels")
        return
    except ImportError:
        pass
    if "jaxsuite" not in sys.modules:
        pkg = types.ModuleType("jaxsuite")
        pkg.__path__ = [str(ROOT / "jaxsuite")]
        sys.modules["jaxsuite"] = pkg
    spec = importlib.util.spec_from_file_location(
        "jaxsuite.kernels",
        ROOT / "kernels" / "__init__.py",
        submodule_search_locations=[str(ROOT / "kernels")],
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["jaxsuite.kernels"] = module
    spec.loader.exec_module(module)


@dataclasses.dataclass
class KernelCheck:
    """One kernel's check.

    Attributes:
      fn: ``fn(*args, implementation=..., interpret=...) -> array``.
      args: positional inputs.
      diff_argnums: the args whose gradients are compared.
      rtol: tolerance, relative to the largest magnitude of the reference.
      size: items processed per call (for items/s), e.g. points.
      note: what the sizes are.
    """

    fn: Callable[..., Any]
    args: tuple
    diff_argnums: tuple[int, ...]
    rtol: float = 1e-5
    size: int = 1
    note: str = ""


REGISTRY: dict[str, Callable[[bool], KernelCheck]] = {}


def register(name: str):
    """Decorator adding ``make(smoke) -> KernelCheck`` under ``name``."""

    def deco(make):
        REGISTRY[name] = make
        return make

    return deco


def _hash_encoding(smoke: bool, backward: str) -> KernelCheck:
    he = importlib.import_module("jaxsuite.kernels.hash_encoding")
    if smoke:
        cfg = he.HashEncodingConfig(
            4, 2, table_size=1000, base_resolution=2, per_level_scale=2.0
        )
        n, block = 200, 32
    else:
        cfg = he.HashEncodingConfig(16, 2, log2_table_size=19, max_resolution=2048)
        n, block = 2**18, 256
    kx, kt = jax.random.split(jax.random.key(0))
    x = jax.random.uniform(kx, (n, 3))
    shape = (cfg.num_levels, cfg.hashmap_size, cfg.features_per_level)
    table = jax.random.normal(kt, shape)

    def fn(x, table, *, implementation, interpret):
        return he.hash_encode(
            x,
            table,
            config=cfg,
            implementation=implementation,
            interpret=interpret,
            backward=backward,
            block_size=block,
        )

    note = f"N={n} L={cfg.num_levels} F={cfg.features_per_level} T={cfg.hashmap_size}"
    return KernelCheck(fn, (x, table), (0, 1), rtol=2e-5, size=n, note=note)


register("hash_encoding")(functools.partial(_hash_encoding, backward="sort"))
register("hash_encoding_atomic")(functools.partial(_hash_encoding, backward="atomic"))
for _backward in ("split_sort", "split_atomic"):
    register(f"hash_encoding_{_backward}")(
        functools.partial(_hash_encoding, backward=_backward)
    )


@register("splatting")
def _splatting(smoke: bool) -> KernelCheck:
    testing = importlib.import_module("jaxsuite.kernels.splatting.testing")
    return KernelCheck(**testing.gpu_check_case(smoke))


def _max_rel_err(got, want) -> float:
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    return float(np.abs(got - want).max() / scale) if want.size else 0.0


def run_check(name: str, check: KernelCheck, smoke: bool, repeats: int) -> dict:
    """Compare pallas to reference (values, grads) and time both."""
    out_shape = jax.eval_shape(
        lambda *a: check.fn(*a, implementation="reference", interpret=False),
        *check.args,
    )
    ct = jax.random.normal(jax.random.key(1), out_shape.shape, out_shape.dtype)
    row = {"kernel": name, "note": check.note, "size": check.size}
    results = {}
    for impl in ("reference", "pallas"):
        interpret = smoke and impl == "pallas"

        def f(*diff, impl=impl, interpret=interpret):
            args = list(check.args)
            for i, a in zip(check.diff_argnums, diff):
                args[i] = a
            return check.fn(*args, implementation=impl, interpret=interpret)

        def fwd_bwd(*diff, f=f):
            out, pull = jax.vjp(f, *diff)
            return out, *pull(ct)

        diff = tuple(check.args[i] for i in check.diff_argnums)
        fwd, both = jax.jit(f), jax.jit(fwd_bwd)
        results[impl] = jax.block_until_ready(both(*diff))
        row[f"{impl}_forward_s"] = bench_util.time_fn(fwd, diff, repeats)[1]
        row[f"{impl}_forward_backward_s"] = bench_util.time_fn(both, diff, repeats)[1]
    errors = [
        _max_rel_err(p, r)
        for p, r in zip(results["pallas"], results["reference"], strict=True)
    ]
    row["value_err"] = errors[0]
    row["grad_errs"] = errors[1:]
    row["ok"] = bool(max(errors) <= check.rtol)
    row["rtol"] = check.rtol
    for p in ("forward", "forward_backward"):
        row[f"speedup_{p}"] = row[f"reference_{p}_s"] / row[f"pallas_{p}_s"]
    return row


def _table(rows: list[dict]) -> str:
    """Errors, median milliseconds and reference/pallas speed-ups."""
    head = (
        f"{'kernel':22s} {'ok':4s} {'val err':>8s} {'grad err':>8s} "
        f"{'ref fwd':>9s} {'pal fwd':>9s} {'ref f+b':>9s} {'pal f+b':>9s} "
        f"{'x fwd':>6s} {'x f+b':>6s}"
    )
    lines = [head + "   (times in ms)", "-" * len(head)]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['kernel']:22s} FAIL {r['error']}")
            continue
        ms = [
            r[f"{impl}_{p}_s"] * 1e3
            for p in ("forward", "forward_backward")
            for impl in ("reference", "pallas")
        ]
        lines.append(
            f"{r['kernel']:22s} {'yes' if r['ok'] else 'FAIL':4s} "
            f"{r['value_err']:8.1e} {max(r['grad_errs'], default=0.0):8.1e} "
            + " ".join(f"{t:9.3f}" for t in ms)
            + f" {r['speedup_forward']:6.2f} {r['speedup_forward_backward']:6.2f}"
        )
    return "\n".join(lines)


def main(argv) -> int:
    del argv
    _import_kernels()
    backend = jax.default_backend()
    smoke = _CPU_SMOKE.value or backend != "gpu"
    if smoke and not _CPU_SMOKE.value:
        print(f"no GPU (backend={backend}): running the CPU smoke check")
    repeats = 2 if smoke else _REPEATS.value
    names = _KERNELS.value or list(REGISTRY)
    rows = []
    for name in names:
        start = time.perf_counter()
        try:
            row = run_check(name, REGISTRY[name](smoke), smoke, repeats)
        except Exception as e:  # report and go on to the next kernel
            row = {"kernel": name, "ok": False, "error": f"{type(e).__name__}: {e}"}
            row["traceback"] = traceback.format_exc()[-4000:]
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print(f"{name}: {'ok' if row['ok'] else 'FAIL'} ({row['wall_s']:.1f} s)")
    result = {
        "benchmark": "gpu_check",
        "mode": "cpu_smoke (interpret=True, timings not meaningful)"
        if smoke
        else "compiled",
        "env": bench_util.bench_env(),
        "unit": "seconds (median); errors are max |pallas - ref| / max(1, max |ref|)",
        "rows": rows,
    }
    suffix = "cpu_smoke" if smoke else backend
    out = (
        pathlib.Path(_OUT.value)
        if _OUT.value
        else (ROOT / "benchmarks" / "results" / f"gpu_check_{suffix}.json")
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))
    print(f"wrote {out}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    app.run(main)
