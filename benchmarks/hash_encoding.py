"""Throughput of the hash encoding: points per second, forward and forward+backward.

Two grids, both L=16, F=2, N_min=16, N_max=2048 (Instant-NGP's NeRF settings):
T=2^19 and T=2^14. On CPU only the reference (XLA) is timed, since the Pallas
kernel runs there only in the slow interpreter; on GPU the reference, the
kernel with the deterministic (sort) table gradient and the kernel with atomic
adds are timed. Forward+backward is one VJP with a fixed cotangent, returning
the gradients wrt the points and the table.

    python benchmarks/hash_encoding.py --num_points=65536 --repeats=5

Writes ``benchmarks/results/hash_encoding_<backend>.json`` and prints a table.
"""

from __future__ import annotations

import json
import pathlib

import bench_util
import jax
from absl import app, flags
from jaxsuite.kernels.hash_encoding import HashEncodingConfig, hash_encode, init_table

_NUM_POINTS = flags.DEFINE_integer("num_points", 65536, "Points per call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per measurement.")
_IMPLEMENTATIONS = flags.DEFINE_string(
    "implementations",
    "auto",
    "Comma list of reference,pallas,pallas_atomic; auto = all on GPU, "
    "reference elsewhere.",
)
_OUT = flags.DEFINE_string("out", None, "JSON path (default: results/).")

CONFIGS = {
    "L16_F2_T2^19": HashEncodingConfig(16, 2, log2_table_size=19, max_resolution=2048),
    "L16_F2_T2^14": HashEncodingConfig(16, 2, log2_table_size=14, max_resolution=2048),
}
# name -> hash_encode keyword arguments
VARIANTS = {
    "reference": dict(implementation="reference"),
    "pallas": dict(implementation="pallas", interpret=False, deterministic=True),
    "pallas_atomic": dict(
        implementation="pallas", interpret=False, deterministic=False
    ),
}


def bench(num_points: int, repeats: int, variants: list[str]) -> list[dict]:
    """Time every (config, variant, pass); returns one row per measurement."""
    rows = []
    for cname, cfg in CONFIGS.items():
        kx, kt, kg = jax.random.split(jax.random.key(0), 3)
        x = jax.random.uniform(kx, (num_points, 3))
        table = init_table(kt, cfg)
        ct = jax.random.normal(kg, (num_points, cfg.output_dim))
        for vname in variants:
            kw = VARIANTS[vname]
            encode = lambda x, t, kw=kw, cfg=cfg: hash_encode(x, t, config=cfg, **kw)
            fwd = jax.jit(encode)

            def fwd_bwd(x, t, ct, encode=encode):
                out, pull = jax.vjp(encode, x, t)
                return out, *pull(ct)

            for pname, fn, args in (
                ("forward", fwd, (x, table)),
                ("forward_backward", jax.jit(fwd_bwd), (x, table, ct)),
            ):
                first, median = bench_util.time_fn(fn, args, repeats)
                rows.append(
                    {
                        "config": cname,
                        "implementation": vname,
                        "pass": pname,
                        "num_points": num_points,
                        "median_s": median,
                        "first_call_s": first,
                        "points_per_s": num_points / median,
                    }
                )
                print(f"  {cname:14s} {vname:14s} {pname:17s} {median * 1e3:9.2f} ms")
    return rows


def _table(rows: list[dict]) -> str:
    head = (
        f"{'config':14s} {'implementation':14s} {'pass':17s} {'ms':>9s} {'Mpts/s':>8s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['config']:14s} {r['implementation']:14s} {r['pass']:17s} "
            f"{r['median_s'] * 1e3:9.2f} {r['points_per_s'] / 1e6:8.3f}"
        )
    return "\n".join(lines)


def main(argv) -> None:
    del argv
    backend = jax.default_backend()
    if _IMPLEMENTATIONS.value == "auto":
        variants = list(VARIANTS) if backend == "gpu" else ["reference"]
    else:
        variants = _IMPLEMENTATIONS.value.split(",")
    print(f"backend={backend} device={jax.devices()[0].device_kind}")
    rows = bench(_NUM_POINTS.value, _REPEATS.value, variants)
    result = dict(
        benchmark="hash_encoding",
        env=bench_util.bench_env(),
        num_points=_NUM_POINTS.value,
        repeats=_REPEATS.value,
        configs={k: str(v) for k, v in CONFIGS.items()},
        unit=dict(median_s="s", points_per_s="points/s"),
        rows=rows,
    )
    out = (
        pathlib.Path(_OUT.value)
        if _OUT.value
        else (
            pathlib.Path(__file__).parent / "results" / f"hash_encoding_{backend}.json"
        )
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(_table(rows))
    print(f"wrote {out}")


if __name__ == "__main__":
    app.run(main)
