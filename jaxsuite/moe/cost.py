"""A stated cost model of one MoE training step on 2 nodes x 4 devices.

Per layer and step (forward + backward):

* non-MoE work (attention) takes ``3 T_attn`` (backward = 2x forward),
  ``T_attn = tokens * (8 h^2 + 4 seq h) / flops``;
* expert compute takes ``3 * max_d(tokens routed to d) * 4 h f / flops``: the
  slowest device sets the pace (the straggler effect of skew);
* each of the 4 token all-to-alls (dispatch and combine, forward and
  backward) takes ``max_d(intra_d / bw_intra + inter_d / bw_inter)``, where
  ``intra_d`` / ``inter_d`` are the larger of the bytes device d sends and
  receives inside / across nodes;
* parameter gathers (SparseAllGather, FSDP all-gather) hide behind the
  forward attention and are charged only beyond it; the gradient reductions
  (and, with re-materialisation, the second gather) hide behind the
  backward attention (``2 T_attn``). SparseAllGather moves what the
  implemented collective moves (:mod:`jaxsuite.moe.collectives`: the
  bucketed ``direct`` or ``relay`` packing, spread evenly over all peers),
  or with ``collective="planned"`` only the planned replicas, each sent by
  its owner (the paper's per-chunk Broadcasts without padding).

Defaults are the paper's cluster B (NVSwitch 600 GB/s inside a node,
400 Gbps = 50 GB/s between nodes) and GPT-MoE-S (h = 768, f = 1536,
seq 2048), bf16, with an assumed 40% of an A100's 312 TFLOP/s. The model
turns measured routing fractions into times; it measures nothing itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from jaxsuite.moe import collectives
from jaxsuite.moe import plans as plans_lib


@dataclass(frozen=True)
class CostModel:
    """Hardware and model scale of the modelled cluster."""

    devices: int = 8
    nodes: int = 2
    bw_intra: float = 600e9
    bw_inter: float = 50e9
    flops: float = 0.4 * 312e12
    hidden: int = 768
    ffn: int = 1536
    seq_len: int = 2048
    tokens_per_device: int = 16384
    bytes_per_value: int = 2

    @property
    def topo(self) -> plans_lib.Topology:
        return plans_lib.Topology(self.devices, self.nodes)

    @property
    def expert_bytes(self) -> float:
        return 2.0 * self.hidden * self.ffn * self.bytes_per_value

    @property
    def attn_time(self) -> float:
        h = self.hidden
        per_token = 8 * h * h + 4 * self.seq_len * h
        return self.tokens_per_device * per_token / self.flops

    def overlap_degree(self) -> int:
        """Algorithm 1's ``t = T_nonMoE * bw / expert_size`` (inter-node bw)."""
        return int(self.attn_time * self.bw_inter / self.expert_bytes)

    def phase_time(self, sent: np.ndarray, recv: np.ndarray) -> float:
        """Time of one exchange: ``sent``/``recv`` (D, 2) bytes intra/inter."""
        both = np.maximum(sent, recv)
        return float(np.max(both[:, 0] / self.bw_intra + both[:, 1] / self.bw_inter))

    def scale_counts(self, load: np.ndarray) -> np.ndarray:
        """Measured loads (D_src, E) -> modelled token-expert pairs per source.

        Each source keeps its measured expert mix and sends
        ``2 * tokens_per_device`` (top-2) assignments.
        """
        load = np.asarray(load, np.float64)
        rows = load.sum(-1, keepdims=True)
        frac = np.where(rows > 0, load / np.maximum(rows, 1e-12), 1.0 / load.shape[-1])
        return frac * 2 * self.tokens_per_device


def token_traffic(
    counts: np.ndarray,
    route_dev: np.ndarray,
    topo: plans_lib.Topology,
    row_bytes: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One all-to-all's bytes and the tokens each device computes.

    Args:
      counts: (D_src, E) token-expert pairs.
      route_dev: (D_src, E, R) chosen replica devices (-1 padded); each
        source splits its tokens of an expert evenly over them.
      row_bytes: bytes of one token row.

    Returns:
      (sent (D, 2), recv (D, 2), tokens (D,)).
    """
    devices = counts.shape[0]
    sent = np.zeros((devices, 2))
    recv = np.zeros((devices, 2))
    tokens = np.zeros(devices)
    share = plans_lib.split_counts(counts, route_dev)
    src, e, r = np.nonzero(route_dev >= 0)
    dst = route_dev[src, e, r]
    n = share[src, e, r]
    np.add.at(tokens, dst, n)
    away = dst != src
    src, dst, n = src[away], dst[away], n[away] * row_bytes
    cross = (src // topo.per_node != dst // topo.per_node).astype(np.int64)
    np.add.at(sent, (src, cross), n)
    np.add.at(recv, (dst, cross), n)
    return sent, recv, tokens


def fsdp_param_traffic(
    pool_expert: np.ndarray, model: CostModel
) -> tuple[np.ndarray, np.ndarray]:
    """(sent, recv) (D, 2) bytes of gathering every expert to every device."""
    topo = model.topo
    devices = pool_expert.shape[0]
    owned = (pool_expert >= 0).sum(-1)
    total = owned.sum()
    sent = np.zeros((devices, 2))
    recv = np.zeros((devices, 2))
    for d in range(devices):
        near = [o for o in range(devices) if o != d and topo.node(o) == topo.node(d)]
        far = [o for o in range(devices) if topo.node(o) != topo.node(d)]
        sent[d] = owned[d] * model.expert_bytes * np.array([len(near), len(far)])
        recv[d] = model.expert_bytes * np.array(
            [owned[near].sum(), owned[far].sum() if far else 0]
        )
    assert np.isclose(recv.sum(), (devices - 1) * total * model.expert_bytes)
    return sent, recv


def bucketed_param_traffic(
    pool_expert: np.ndarray, mat: np.ndarray, model: CostModel
) -> np.ndarray:
    """(D, 2) bytes each device sends (= receives) in the bucketed SparseAllGather.

    The layer's cheaper packing at its smallest bucket; its all-to-all and
    all-gather spread the bytes evenly over the ``D - 1`` peers, so
    ``(per_node - 1) / (D - 1)`` of them stay inside the node.
    """
    topo = model.topo
    devices, slots = pool_expert.shape
    experts = int(pool_expert.max()) + 1
    needs = collectives.gather_needs(pool_expert, mat, experts)
    bucket = collectives.choose_bucket([needs], devices, slots, experts)
    wire = collectives.wire_chunks(*bucket, devices) * model.expert_bytes
    inside = (topo.per_node - 1) / max(devices - 1, 1)
    return np.tile([wire * inside, wire * (1 - inside)], (devices, 1))


def layer_time(
    strategy: str,
    counts: np.ndarray,
    pool_expert: np.ndarray,
    mat: np.ndarray | None,
    model: CostModel,
    *,
    remat: bool = False,
    collective: str = "bucketed",
) -> dict[str, float]:
    """Modelled forward+backward time of one MoE layer (seconds).

    Args:
      strategy: ``ep``, ``fsdp``, ``fastermoe`` or ``fssdp``.
      counts: (D_src, E) token-expert pairs (see :meth:`CostModel.scale_counts`).
      pool_expert: (D, K) the layer's experts in each device's local slots.
      mat: (D, m) replicas (FasterMoE / FSSDP), else None.
      remat: gather again in the backward pass.
      collective: ``bucketed`` (the implemented SparseAllGather's padded
        bytes) or ``planned`` (only the planned replicas).

    Returns:
      ``{"attn", "compute", "a2a", "param", "total"}`` plus byte counts
      ``token_bytes`` and ``param_bytes`` (summed over devices, one step).
    """
    topo = model.topo
    devices, experts = counts.shape
    row = model.hidden * model.bytes_per_value
    t_attn = model.attn_time
    per_pair = 4 * model.hidden * model.ffn / model.flops
    a2a = 0.0
    token_bytes = 0.0
    param = 0.0
    param_bytes = 0.0
    if strategy == "fsdp":
        tokens = counts.sum(-1)
        sent, recv = fsdp_param_traffic(pool_expert, model)
        gather = model.phase_time(sent, recv)
        param = max(0.0, gather - t_attn) + max(
            0.0, gather * (2 if remat else 1) - 2 * t_attn
        )
        param_bytes = sent.sum() * (3 if remat else 2)
    else:
        if strategy == "ep":
            mat = -np.ones((devices, 0), np.int32)
        route_dev, _ = plans_lib.route(pool_expert, mat, topo)
        sent, recv, tokens = token_traffic(counts, route_dev, topo, row)
        a2a = 4 * model.phase_time(sent, recv)
        token_bytes = 4 * sent.sum()
        if strategy != "ep":
            if collective == "planned":
                out, inn = plans_lib.useful_param_bytes(
                    pool_expert, mat, topo, model.expert_bytes
                )
            else:
                out = inn = bucketed_param_traffic(pool_expert, mat, model)
            gather = model.phase_time(out, inn)
            param = max(0.0, gather - t_attn) + max(
                0.0, gather * (2 if remat else 1) - 2 * t_attn
            )
            param_bytes = out.sum() * (3 if remat else 2)
    compute = 3 * float(np.max(tokens)) * per_pair
    total = 3 * t_attn + compute + a2a + param
    return {
        "attn": 3 * t_attn,
        "compute": compute,
        "a2a": a2a,
        "param": param,
        "total": total,
        "token_bytes": float(token_bytes),
        "param_bytes": float(param_bytes),
        "max_over_mean_tokens": float(np.max(tokens) / max(np.mean(tokens), 1e-12)),
    }
