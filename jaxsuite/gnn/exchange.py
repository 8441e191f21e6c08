"""The device side of the feature caches: lookup, fill, and the all_to_all layer.

Each device holds a set-associative slab ``rows`` [S, W, D] and ``tags``
[S, W] (global arrays [n_dev, S, W, ...] sharded over the mesh axis).
:func:`serve` answers a list of requested ids on one device: resident ids from
its slab (its own tag compare), ids in the prefetched victim staging area from
there, and the rest from rows the host read from storage; then it writes the
planned insertions and copies out the lines that go to the victim buffer.

:func:`make_shared_fetch` is the communication layer of the shared cache:
inside ``jax.shard_map`` every device sends its requests, bucketed by owner
(``id % n_dev``) into ``[n_dev, cap]`` (-1 padded), with ``all_to_all``; each
owner serves what it received and a second ``all_to_all`` returns the rows to
the requesters, which scatter them into their input order.
:func:`make_independent_fetch` is the baseline: every device serves only its
own requests from its own private cache, with no exchange.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp


class ServeInputs(NamedTuple):
    """Host-planned inputs of one device's :func:`serve` (per-device shapes).

    Attributes:
      fill_idx: [R] int32 row of ``fill_rows`` serving each request, or -1.
      fill_rows: [F, D] float32 rows read from storage.
      stage_ids: [V] int32 ids in the victim staging area, sorted ascending
        (-1 padding first).
      stage_rows: [V, D] float32 their rows.
      insert_way: [R] int32 way each served row is written to, or -1.
      evict_set: [E] int32 set of each line copied out to the victim buffer.
      evict_way: [E] int32 its way (-1 padded).
    """

    fill_idx: jax.Array
    fill_rows: jax.Array
    stage_ids: jax.Array
    stage_rows: jax.Array
    insert_way: jax.Array
    evict_set: jax.Array
    evict_way: jax.Array


def serve(
    rows: jax.Array, tags: jax.Array, req: jax.Array, inp: ServeInputs, *, set_div: int
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array, jax.Array]:
    """Serves requests on one device and updates its cache.

    Args:
      rows: [S, W, D] cached rows.
      tags: [S, W] int32 resident ids (-1 empty).
      req: [R] int32 requested ids (-1 padding).
      inp: host-planned fills, staging and insertions.
      set_div: the set of id v is ``(v // set_div) % S``.

    Returns:
      ``(out [R, D], rows, tags, evicted [E, D], hit [R], victim_hit [R])``:
      the served rows (zeros for padding), the updated cache, the rows of the
      lines listed in ``evict_set/evict_way`` before the update, and which
      requests the slab and the staging area served.
    """
    num_sets, ways, _ = rows.shape
    valid = req >= 0
    sets = jnp.where(valid, (req // set_div) % num_sets, 0)
    match = (tags[sets] == req[:, None]) & valid[:, None]
    hit = match.any(axis=1)
    way = match.argmax(axis=1)
    spos = jnp.minimum(jnp.searchsorted(inp.stage_ids, req), inp.stage_ids.shape[0] - 1)
    vhit = (inp.stage_ids[spos] == req) & valid & ~hit
    fill = inp.fill_rows[jnp.maximum(inp.fill_idx, 0)]
    out = jnp.where(vhit[:, None], inp.stage_rows[spos], fill)
    out = jnp.where(hit[:, None], rows[sets, way], out)
    out = jnp.where(valid[:, None], out, jnp.zeros_like(out))
    evicted = rows[jnp.maximum(inp.evict_set, 0), jnp.maximum(inp.evict_way, 0)]
    ins = (inp.insert_way >= 0) & valid
    iset = jnp.where(ins, sets, num_sets)  # out of range: dropped
    iway = jnp.maximum(inp.insert_way, 0)
    rows = rows.at[iset, iway].set(out, mode="drop")
    tags = tags.at[iset, iway].set(req, mode="drop")
    return out, rows, tags, evicted, hit, vhit


def _first(tree):
    return jax.tree.map(lambda a: a[0], tree)


def _lead(tree):
    return jax.tree.map(lambda a: a[None], tree)


@functools.cache
def make_shared_fetch(mesh: jax.sharding.Mesh, axis: str, num_inputs: int):
    """The shared-cache fetch: requests and rows cross devices by ``all_to_all``.

    The returned jitted function takes (leading axis = device, sharded)
    ``rows`` [n, S, W, D], ``tags`` [n, S, W], ``out_req`` [n, n, cap] (row o:
    this device's requests owned by device o), ``out_pos`` [n, n, cap]
    (their positions in the device's input list, ``num_inputs`` for padding)
    and ``ServeInputs`` in owner layout (``fill_idx``/``insert_way`` [n, n *
    cap], row s * cap + j answering request j of source s). It returns
    ``(features [n, U, D], rows, tags, evicted [n, E, D], hit [n, n * cap],
    victim_hit [n, n * cap])``; ``hit`` and ``victim_hit`` are in owner layout.
    """
    n = mesh.shape[axis]

    def local(rows, tags, out_req, out_pos, inp):
        rows, tags, out_req, out_pos, inp = _first((rows, tags, out_req, out_pos, inp))
        cap = out_req.shape[1]
        recv = jax.lax.all_to_all(out_req, axis, 0, 0, tiled=True)  # [src, cap]
        out, rows, tags, evicted, hit, vhit = serve(
            rows, tags, recv.reshape(-1), inp, set_div=n
        )
        back = jax.lax.all_to_all(out.reshape(n, cap, -1), axis, 0, 0, tiled=True)
        feats = jnp.zeros((num_inputs, back.shape[-1]), back.dtype)
        feats = feats.at[out_pos.reshape(-1)].set(
            back.reshape(n * cap, -1), mode="drop"
        )
        return _lead((feats, rows, tags, evicted, hit, vhit))

    spec = jax.P(axis)
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec))


@functools.cache
def make_independent_fetch(mesh: jax.sharding.Mesh, axis: str):
    """Private per-device caches: each device serves its own input list.

    Takes ``rows`` [n, S, W, D], ``tags`` [n, S, W], ``req`` [n, U] (the
    input lists) and ``ServeInputs`` with ``fill_idx``/``insert_way`` [n, U];
    returns ``(features [n, U, D], rows, tags, evicted, hit, victim_hit)``.
    """

    def local(rows, tags, req, inp):
        rows, tags, req, inp = _first((rows, tags, req, inp))
        return _lead(serve(rows, tags, req, inp, set_div=1))

    spec = jax.P(axis)
    return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=spec, out_specs=spec))
