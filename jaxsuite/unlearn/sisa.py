"""SISA, the baseline: one slice order per shard, retraining on every deletion.

SISA (Bourtoule et al., S&P 2021) shards and slices the data like S3T but
trains each shard along a single order, tuning the whole (adapter) model at
every slice and checkpointing after each. Deleting a sample in slice
position ``t`` of its shard restarts from the checkpoint before ``t`` and
retrains slices ``t..L`` without the sample (and without the shard's earlier
deletions). Its run directory has the same layout as an S3T run (``method =
"sisa"``, ``stages/``, ``ledger.json``); the ledger's provenance records,
per retrained node, the samples it was trained without.

:func:`truncation_view` answers how long SISA could go *without* retraining
if it served deletions by truncation, as S3T does: that is S3T's rule with
``B = 1``, and is the bar S3T's deletion capacity is measured against.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import orbax.checkpoint as ocp

from jaxsuite.unlearn import ledger, runs, training


def delete_and_retrain(
    setup: runs.Setup,
    run_dir: str,
    settings: runs.TrainSettings,
    sample: int,
    *,
    runner: training.NodeRunner | None = None,
) -> dict[str, Any]:
    """Deletes ``sample`` from a SISA run by retraining its shard from the slice on.

    Args:
      setup: the experiment's shared pieces.
      run_dir: a trained SISA run.
      settings: the run's training settings (``method == "sisa"``).
      sample: training sample id.
      runner: device runner for the retraining (default: the setup's).

    Returns:
      ``{"sample", "shard", "slice", "stages_retrained", "seconds"}``; seconds
      is the wall time of retraining and storing the new checkpoints.

    Raises:
      UnknownSampleError, AlreadyDeletedError, MissingCheckpointError,
      LedgerCorruptError: nothing was changed.
    """
    body = ledger.load(run_dir)
    if body["meta"]["method"] != "sisa":
        raise ValueError(f"{run_dir} is not a SISA run")
    shard, slc = ledger.locate(body, sample)
    if sample in set(body["state"]["deleted"]):
        raise ledger.AlreadyDeletedError(f"sample {sample} was already deleted")
    order = tuple(body["meta"]["sequences"][shard][0])
    pos = order.index(slc)
    removed = {
        i for i in body["state"]["deleted"] if body["assignment"][i][0] == shard
    } | {sample}
    t0 = time.perf_counter()
    start = None
    if pos > 0:
        start = (
            pos,
            training.load_node(run_dir, shard, order[:pos], setup.init_flats[shard]),
        )
    flats = setup.train_chain(
        settings, shard, order, removed, start=start, runner=runner
    )
    with ocp.StandardCheckpointer() as ckptr:
        for t, flat in zip(range(pos + 1, len(order) + 1), flats):
            training.save_node(ckptr, run_dir, shard, order[:t], flat)
        ckptr.wait_until_finished()
    seconds = time.perf_counter() - t0
    new = dict(body)
    new["state"] = {
        **body["state"],
        "deleted": [*body["state"]["deleted"], int(sample)],
        "retrained": [
            r + (1 if s == shard else 0)
            for s, r in enumerate(body["state"]["retrained"])
        ],
    }
    nodes = dict(new["provenance"][str(shard)])
    for t in range(pos + 1, len(order) + 1):
        in_prefix = {i for i in removed if body["assignment"][i][1] in order[:t]}
        nodes[ledger.node_key(order[:t])] = ledger.node_provenance(
            "sisa", order[:t], body["meta"]["num_groups"], sorted(in_prefix)
        )
    new["provenance"] = {**new["provenance"], str(shard): nodes}
    ledger.save(run_dir, new)
    setup.forget_cached(run_dir, shard)
    return {
        "sample": int(sample),
        "shard": shard,
        "slice": slc,
        "stages_retrained": len(order) - pos,
        "seconds": seconds,
    }


def truncation_view(body: dict[str, Any], stream: Sequence[int]) -> int:
    """Deletions of ``stream`` served before a shard would need retraining.

    Applies S3T's truncation rule to ``body``'s sequences, starting from no
    deletions and touching no file, and returns how many requests were served
    before the first one that leaves a shard with no model; ``len(stream)``
    if none does.
    """
    seqs = body["meta"]["sequences"]
    state = {
        "meta": body["meta"],
        "assignment": body["assignment"],
        "state": {
            "deleted": [],
            "lengths": [[len(s) for s in shard] for shard in seqs],
            "retrained": [0] * len(seqs),
        },
    }
    for k, sample in enumerate(stream):
        state, effect = ledger.apply_deletion(state, int(sample))
        if effect["shard_died"]:
            return k
    return len(stream)
