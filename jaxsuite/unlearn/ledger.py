"""The provenance ledger: what every stored parameter has seen, and what is served.

A trained S3T (or SISA) run stores one checkpoint per *node*: a shard and a
prefix of one of its slice sequences (the model after that stage). The
ledger, kept beside the checkpoints as ``ledger.json``, holds

* ``meta``: method, number of shards ``m`` and slices ``L``, each shard's
  sequences, the parameter groups (``group0 .. group{G-1}``, ``head``) and
  which groups each stage trains;
* ``assignment``: ``[shard, slice]`` of every training sample id;
* ``provenance``: for every stored node, the slices each parameter group has
  seen (and, for SISA, the samples removed before it was retrained);
* ``state``: deleted sample ids in order, the surviving prefix length of
  every sequence, and how many times each shard was retrained.

The file is a JSON object ``{"format", "body", "sha256"}``; the checksum is
over the canonical JSON of ``body``, so a corrupted ledger is detected on
load instead of silently serving the wrong model. Everything here is plain
Python: deletion needs no JAX.

The state machine of deletion lives here too (:func:`apply_deletion`): a
sample in (shard ``s``, slice ``j``) truncates every sequence of shard ``s``
that has ``j`` in its surviving prefix to the part before ``j`` (length 0
drops the sequence), and inference serves, per shard, the surviving prefix
of greatest length.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

FORMAT = "s3t-ledger/1"
LEDGER_FILE = "ledger.json"
STAGES_DIR = "stages"
HEAD = "head"
# Orbax writes this file last, when it finalises a checkpoint directory.
_FINAL_MARK = "_CHECKPOINT_METADATA"


class LedgerError(RuntimeError):
    """Base class of the ledger's errors."""


class LedgerCorruptError(LedgerError):
    """The ledger file cannot be parsed or fails its checksum."""


class UnknownSampleError(LedgerError, KeyError):
    """A sample id that the run never trained on."""

    def __str__(self) -> str:  # KeyError would quote the message.
        return str(self.args[0])


class AlreadyDeletedError(LedgerError):
    """A sample that an earlier request already deleted."""


class MissingCheckpointError(LedgerError):
    """A stage checkpoint that a served model needs is absent."""


def node_key(prefix: Sequence[int]) -> str:
    """Name of the node trained on ``prefix``: ``(2, 0, 1) -> "p2-0-1"``."""
    return "p" + "-".join(str(int(j)) for j in prefix)


def parse_node_key(key: str) -> tuple[int, ...]:
    """Inverse of :func:`node_key`."""
    if not key.startswith("p"):
        raise ValueError(f"not a node key: {key!r}")
    return tuple(int(j) for j in key[1:].split("-")) if len(key) > 1 else ()


def checkpoint_dir(run_dir: str, shard: int, prefix: Sequence[int]) -> str:
    """Where the node (``shard``, ``prefix``) is stored: ``stages/s{shard}/{key}``."""
    return os.path.join(
        os.path.abspath(run_dir), STAGES_DIR, f"s{int(shard)}", node_key(prefix)
    )


def checkpoint_present(run_dir: str, shard: int, prefix: Sequence[int]) -> bool:
    """Whether the node's Orbax checkpoint exists and was finalised."""
    path = checkpoint_dir(run_dir, shard, prefix)
    return os.path.isfile(os.path.join(path, _FINAL_MARK))


def group_names(num_groups: int) -> list[str]:
    """Parameter-group names: ``group0 .. group{G-1}`` then ``head``."""
    return [f"group{g}" for g in range(num_groups)] + [HEAD]


def stage_groups(method: str, stage: int, num_groups: int) -> list[str]:
    """Groups trained at 1-based ``stage``: S3T's group ``stage-1`` and the head.

    SISA and full training update every group at every stage.
    """
    if method == "s3t":
        return [f"group{stage - 1}", HEAD]
    return group_names(num_groups)


def node_provenance(
    method: str,
    prefix: Sequence[int],
    num_groups: int,
    removed: Sequence[int] = (),
) -> dict[str, Any]:
    """Which slices each group of the node ``prefix`` has seen.

    At stage ``t`` the trained groups (see :func:`stage_groups`) see the
    cumulative slices ``prefix[:t]`` (their new values also depend on the
    frozen groups, which saw a subset); untouched groups keep what they had.

    Returns:
      ``{"groups": {group: sorted slices}, "removed": sorted sample ids}``.
    """
    seen: dict[str, set[int]] = {g: set() for g in group_names(num_groups)}
    for t in range(1, len(prefix) + 1):
        for g in stage_groups(method, t, num_groups):
            seen[g] = set(prefix[:t])
    return {
        "groups": {g: sorted(s) for g, s in seen.items()},
        "removed": sorted(int(i) for i in removed),
    }


def new_ledger(
    *,
    method: str,
    sequences: Sequence[Sequence[Sequence[int]]],
    num_slices: int,
    num_groups: int,
    assignment: Sequence[Sequence[int]],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ledger body of a freshly trained run.

    Args:
      method: ``"s3t"``, ``"sisa"`` or ``"full"``.
      sequences: per shard, its list of slice sequences.
      num_slices: ``L``.
      num_groups: number of adapter groups (LoRA layer groups).
      assignment: per sample id, ``(shard, slice)``.
      extra: more metadata kept under ``meta`` (e.g. the devices used).

    Returns:
      The body: every node of every sequence is recorded, every sequence at
      full length, nothing deleted.
    """
    seqs = [[list(map(int, s)) for s in shard] for shard in sequences]
    provenance = {}
    for shard, shard_seqs in enumerate(seqs):
        nodes = {}
        for seq in shard_seqs:
            for t in range(1, len(seq) + 1):
                nodes[node_key(seq[:t])] = node_provenance(method, seq[:t], num_groups)
        provenance[str(shard)] = nodes
    return {
        "meta": {
            "method": method,
            "num_shards": len(seqs),
            "num_slices": int(num_slices),
            "num_groups": int(num_groups),
            "sequences": seqs,
            **dict(extra or {}),
        },
        "assignment": [[int(s), int(j)] for s, j in assignment],
        "provenance": provenance,
        "state": {
            "deleted": [],
            "lengths": [[len(s) for s in shard] for shard in seqs],
            "retrained": [0] * len(seqs),
        },
    }


# --------------------------------------------------------------------------
# File format: canonical JSON body + checksum, atomic replacement.


def _canonical(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def digest(body: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of ``body``."""
    return hashlib.sha256(_canonical(body)).hexdigest()


def fsync_dir(path: str) -> None:
    """Makes a rename inside directory ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that a crash leaves the old or the new file."""
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(os.path.dirname(os.path.abspath(path)))


def save(directory: str, body: Mapping[str, Any]) -> str:
    """Writes ``directory/ledger.json`` atomically; returns its path."""
    path = os.path.join(directory, LEDGER_FILE)
    doc = {"format": FORMAT, "body": body, "sha256": digest(body)}
    write_atomic(path, json.dumps(doc, indent=1).encode())
    return path


def load(directory: str) -> dict[str, Any]:
    """Reads and verifies ``directory/ledger.json``; returns its body.

    Raises:
      FileNotFoundError: there is no ledger (the run has not finished training).
      LedgerCorruptError: the file does not parse, has another format, or its
        checksum does not match its body.
    """
    path = os.path.join(directory, LEDGER_FILE)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        doc = json.loads(raw)
        body, stored = doc["body"], doc["sha256"]
        fmt = doc["format"]
    except (ValueError, KeyError, TypeError) as e:
        raise LedgerCorruptError(
            f"{path} is corrupted (not a ledger document: {e}); refusing to serve "
            "or delete from it. Restore it from a backup or retrain the run."
        ) from e
    if fmt != FORMAT:
        raise LedgerCorruptError(f"{path} has format {fmt!r}, expected {FORMAT!r}")
    if digest(body) != stored:
        raise LedgerCorruptError(
            f"{path} is corrupted: its checksum does not match its contents; "
            "refusing to serve or delete from it. Restore it from a backup or "
            "retrain the run."
        )
    return body


# --------------------------------------------------------------------------
# The deletion state machine (pure functions of the ledger body).


def locate(body: Mapping[str, Any], sample: int) -> tuple[int, int]:
    """``(shard, slice)`` of ``sample``.

    Raises:
      UnknownSampleError: not a training sample id of this run.
    """
    assignment = body["assignment"]
    if isinstance(sample, bool) or not isinstance(sample, int):
        raise UnknownSampleError(f"sample id must be an integer, got {sample!r}")
    if not 0 <= sample < len(assignment):
        raise UnknownSampleError(
            f"unknown sample {sample}: this run trained on ids 0..{len(assignment) - 1}"
        )
    shard, slc = assignment[sample]
    return int(shard), int(slc)


def served_prefix(body: Mapping[str, Any], shard: int) -> tuple[int, ...] | None:
    """The prefix served for ``shard``: the longest surviving one (None if dead).

    Ties go to the sequence listed first.
    """
    seqs = body["meta"]["sequences"][shard]
    lengths = body["state"]["lengths"][shard]
    best = max(range(len(seqs)), key=lambda b: (lengths[b], -b))
    if lengths[best] == 0:
        return None
    return tuple(seqs[best][: lengths[best]])


def served(body: Mapping[str, Any]) -> dict[int, tuple[int, ...] | None]:
    """Shard -> served prefix (None for a shard with no surviving model)."""
    return {s: served_prefix(body, s) for s in range(body["meta"]["num_shards"])}


def truncations(
    body: Mapping[str, Any], shard: int, slc: int
) -> list[tuple[int, int, int]]:
    """``(sequence, old length, new length)`` of each sequence a hit on ``slc`` cuts."""
    out = []
    seqs = body["meta"]["sequences"][shard]
    for b, (seq, length) in enumerate(zip(seqs, body["state"]["lengths"][shard])):
        pos = seq.index(slc)
        if pos < length:
            out.append((b, length, pos))
    return out


def apply_deletion(
    body: Mapping[str, Any], sample: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Deletes ``sample`` by truncation; returns ``(new body, effect)``.

    The input is not modified. ``effect`` records the shard and slice, the
    truncated sequences, the served prefix before and after, and whether the
    shard lost its last model (it then needs retraining).

    Raises:
      UnknownSampleError: not a sample of this run.
      AlreadyDeletedError: deleted by an earlier request.
    """
    shard, slc = locate(body, sample)
    if sample in set(body["state"]["deleted"]):
        raise AlreadyDeletedError(f"sample {sample} was already deleted")
    new = copy.deepcopy(dict(body))
    cuts = truncations(body, shard, slc)
    for b, _, new_len in cuts:
        new["state"]["lengths"][shard][b] = new_len
    new["state"]["deleted"].append(int(sample))
    before, after = served_prefix(body, shard), served_prefix(new, shard)
    effect = {
        "sample": int(sample),
        "shard": shard,
        "slice": slc,
        "truncated": [list(c) for c in cuts],
        "served_before": None if before is None else list(before),
        "served_after": None if after is None else list(after),
        "shard_died": before is not None and after is None,
    }
    return new, effect


def live_shards(body: Mapping[str, Any]) -> list[int]:
    """Shards that still serve a model."""
    return [s for s, p in served(body).items() if p is not None]


def served_provenance(body: Mapping[str, Any]) -> dict[int, dict[str, Any]]:
    """Shard -> provenance of its served node (live shards only)."""
    out = {}
    for shard, prefix in served(body).items():
        if prefix is not None:
            out[shard] = body["provenance"][str(shard)][node_key(prefix)]
    return out
