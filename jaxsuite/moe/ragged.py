"""Token exchange that moves only the kept tokens (``ragged_all_to_all``).

The fixed-slot exchange of :mod:`jaxsuite.moe.strategies` sends every
``(compute slot, capacity)`` block, full or not. Here each device sorts its
kept rows by destination device and compute slot, sends exactly those rows
with ``jax.lax.ragged_all_to_all`` (their slot travels in an extra column),
applies the experts with ``jax.lax.ragged_dot`` over rows grouped by slot,
and sends the results back the same way. The routing is the same as the
fixed-slot path (queue position ``p`` to chosen replica ``p mod n``), so the
two compute the same function.

XLA:CPU does not implement ``ragged_all_to_all``; :func:`emulated_ragged_all_to_all`
has the same semantics (``output_offsets`` are sender-side offsets into the
receiver's buffer) built from ``all_gather``, so the offsets logic is tested
on CPU devices, and the real collective runs on GPU.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp


def emulated_ragged_all_to_all(
    operand: jax.Array,
    output: jax.Array,
    input_offsets: jax.Array,
    send_sizes: jax.Array,
    output_offsets: jax.Array,
    recv_sizes: jax.Array,
    *,
    axis_name: str,
) -> jax.Array:
    """``jax.lax.ragged_all_to_all`` from ``all_gather`` (any backend).

    Args:
      operand: (N, h) rows to send; rows for device d are
        ``operand[input_offsets[d] : input_offsets[d] + send_sizes[d]]``.
      output: (M, h) buffer the received rows are written into.
      output_offsets: (D,) where those rows start in device d's ``output``.
      recv_sizes: (D,) unused (implied by the senders' ``send_sizes``).

    Returns:
      (M, h) ``output`` with every sender's rows in place.
    """
    del recv_sizes
    me = jax.lax.axis_index(axis_name)
    rows = jax.lax.all_gather(operand, axis_name)  # (D, N, h)
    start = jax.lax.all_gather(input_offsets, axis_name)[:, me][:, None]
    size = jax.lax.all_gather(send_sizes, axis_name)[:, me][:, None]
    first = jax.lax.all_gather(output_offsets, axis_name)[:, me][:, None]
    r = jnp.arange(operand.shape[0])[None, :]
    valid = (r >= start) & (r < start + size)
    dest = jnp.where(valid, first + r - start, output.shape[0])  # (D, N)
    flat = rows.reshape(-1, operand.shape[-1])
    return output.at[dest.reshape(-1)].set(flat, mode="drop")


def _exclusive_cumsum(x: jax.Array, axis: int) -> jax.Array:
    return jnp.cumsum(x, axis=axis) - x


def ragged_ffn(
    w: jax.Array, rows: jax.Array, slot: jax.Array, hidden: int, ffn: int
) -> jax.Array:
    """Applies compute slot ``slot[i]``'s expert to row ``i``.

    Args:
      w: (n, P) flat expert parameters of the compute slots.
      rows: (N, h) token rows.
      slot: (N,) int32 compute slot of each row, ``n`` for none (zero out).

    Returns:
      (N, h) ``gelu(x @ w1) @ w2`` per row, zero where ``slot == n``.
    """
    n = w.shape[0]
    order = jnp.argsort(slot, stable=True)
    x = rows[order]
    sizes = jnp.zeros(n, jnp.int32).at[slot].add(1, mode="drop")
    w1 = w[:, : hidden * ffn].reshape(n, hidden, ffn)
    w2 = w[:, hidden * ffn :].reshape(n, ffn, hidden)
    y = jax.lax.ragged_dot(jax.nn.gelu(jax.lax.ragged_dot(x, w1, sizes)), w2, sizes)
    y = jnp.where((slot[order] < n)[:, None], y, 0.0)
    return jnp.zeros_like(rows).at[order].set(y)


def ragged_exchange(
    q: jax.Array,
    counts: jax.Array,
    r_dev: jax.Array,
    r_slot: jax.Array,
    n_slots: int,
    fn: Callable[[jax.Array, jax.Array], jax.Array],
    axis: str,
    a2a: Callable[..., jax.Array] = jax.lax.ragged_all_to_all,
) -> jax.Array:
    """Sends kept queue rows to their compute slots, applies ``fn``, returns.

    Args:
      q: (E, cap, h) this device's expert queues.
      counts: (E,) kept rows per queue (they fill positions ``0 .. c - 1``).
      r_dev, r_slot: (E, R) chosen replicas of each queue, -1 padded.
      n_slots: compute slots per device.
      fn: ``(rows (M, h), slot (M,)) -> (M, h)``, the expert compute, with
        ``slot == n_slots`` marking unused rows.
      a2a: ``jax.lax.ragged_all_to_all`` or :func:`emulated_ragged_all_to_all`.

    Returns:
      (E, cap, h) expert outputs in queue order (zero past ``counts``).
    """
    num_devices = jax.lax.axis_size(axis)
    me = jax.lax.axis_index(axis)
    experts, cap, h = q.shape
    n = jnp.maximum(jnp.sum(r_dev >= 0, axis=1, keepdims=True), 1)
    pos = jnp.arange(cap)[None, :]
    pick = pos % n
    dev = jnp.take_along_axis(r_dev, pick, 1).reshape(-1)
    slot = jnp.take_along_axis(r_slot, pick, 1).reshape(-1)
    valid = (pos < counts[:, None]).reshape(-1)
    key = jnp.where(valid, dev * n_slots + slot, num_devices * n_slots)
    order = jnp.argsort(key, stable=True)
    slot_col = jax.lax.stop_gradient(slot[order].astype(q.dtype))[:, None]
    send = jnp.concatenate([q.reshape(-1, h)[order], slot_col], axis=1)
    sizes = jnp.zeros(num_devices, jnp.int32).at[jnp.where(valid, dev, num_devices)]
    sizes = sizes.add(1, mode="drop")  # (D,) rows to each device
    matrix = jax.lax.all_gather(sizes, axis)  # (D_src, D_dst)
    in_off = _exclusive_cumsum(sizes, 0)
    out_off = _exclusive_cumsum(matrix, 0)[me]  # where mine start on each dst
    recv = matrix[:, me]
    recv_off = _exclusive_cumsum(recv, 0)
    rows_in = num_devices * experts * cap
    buf = jnp.zeros((rows_in, h + 1), q.dtype)
    got = a2a(send, buf, in_off, sizes, out_off, recv, axis_name=axis)
    used = jnp.arange(rows_in) < jnp.sum(recv)
    slot_in = jnp.where(used, jnp.round(got[:, h]).astype(jnp.int32), n_slots)
    out = fn(got[:, :h], slot_in)
    back_off = _exclusive_cumsum(matrix, 1)[:, me]  # my rows' start on each src
    back = a2a(
        out,
        jnp.zeros((experts * cap, h), q.dtype),
        recv_off,
        recv,
        back_off,
        sizes,
        axis_name=axis,
    )
    return jnp.zeros_like(back).at[order].set(back).reshape(experts, cap, h)
