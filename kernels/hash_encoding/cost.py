"""Analytic cost model of one hash-encoding call: bytes, sorted entries, FLOPs.

Used by ``benchmarks/hash_profile.py`` to put each timing beside the HBM
roofline; plain Python, no device work.
"""

from __future__ import annotations

import math

from .reference import NUM_CORNERS, HashEncodingConfig

SECTOR_BYTES = 32


def cost_model(
    config: HashEncodingConfig, n: int, pass_: str, backward: str | None = None
) -> dict:
    """Analytic traffic and work of one call (estimates, stated per term).

    * ``hbm_bytes``: compulsory HBM traffic. Forward: read ``x`` (12 B/point),
      write the ``L*F`` float32 features, read each level's ``P_l`` table rows
      once. Backward adds: read ``g``, write ``dx``, write the table gradient
      once (``L*T*F`` floats).
    * ``gathered_bytes``: corner gathers at 32-byte sector granularity, 8
      corners x ``L`` x ``N`` x ``ceil(4F/32)`` sectors per pass that gathers
      (forward; the backward gathers again). Mostly served by L2.
    * ``sort_bytes``: estimated key/value traffic of the sort path, for
      ``M`` sorted entries (``8*N`` per sorted hashed level, ``N`` per dense
      level of a split variant): an LSD radix sort with 8-bit digits over
      ``ceil(log2(L*T)/8)`` passes, each reading and writing 4-byte keys and
      4-byte indices (``16*M`` B), plus the gather, scan and scatter of the
      contributions (``4*M*C*4`` B, ``C`` floats per entry). 0 for atomics.
    * ``flops``: float work, per point and level ``9 + 8*(2 + 2F)``
      (position, weights, interpolation); the backward about twice that.
    """
    lp = config.levels()
    f = config.features_per_level
    num_levels, t = config.num_levels, config.hashmap_size
    table_bytes = sum(lp.size) * f * 4
    hbm = 12 * n + 4 * num_levels * f * n + table_bytes
    sectors = NUM_CORNERS * num_levels * n * math.ceil(4 * f / SECTOR_BYTES)
    gathered = sectors * SECTOR_BYTES
    flops = num_levels * n * (9 + NUM_CORNERS * (2 + 2 * f))
    sort_bytes = 0
    if pass_ == "forward_backward":
        hbm += 4 * num_levels * f * n + 12 * n + 4 * num_levels * t * f
        gathered *= 2
        flops *= 3
        num_dense = sum(lp.dense)
        passes = math.ceil(math.log2(num_levels * t) / 8)
        entries = []  # (M, floats per entry)
        if backward == "sort":
            entries.append((NUM_CORNERS * num_levels * n, f))
        elif backward in ("split_sort", "split_atomic"):
            entries.append((num_dense * n, NUM_CORNERS * f))
            if backward == "split_sort":
                entries.append((NUM_CORNERS * (num_levels - num_dense) * n, f))
        sort_bytes = sum(passes * 16 * m + 16 * m * c for m, c in entries)
    return dict(
        hbm_bytes=hbm, gathered_bytes=gathered, sort_bytes=sort_bytes, flops=flops
    )
