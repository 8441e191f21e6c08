"""Durable deletion by truncation: a write-ahead log, the ledger, crash recovery.

A deletion request changes no weights: it rewrites the ledger so that every
sequence of the sample's shard that had seen the sample's slice is cut back
to the prefix before it (see :func:`jaxsuite.unlearn.ledger.apply_deletion`).
:class:`DeletionStore` makes that change durable and atomic:

1. **validate**: reload and checksum the ledger, check that the sample is
   known and not yet deleted, and that the Orbax checkpoint of the model the
   shard will serve afterwards exists; any failure raises before anything is
   written;
2. **log**: append ``begin`` to ``deletions.wal`` and fsync it;
3. **apply**: write the new ledger to a temporary file, fsync, and rename it
   over ``ledger.json`` (then fsync the directory);
4. **commit**: append ``commit`` to the log and fsync; only then is the
   request acknowledged.

Opening a store runs :meth:`DeletionStore.recover`: a ``begin`` without a
``commit`` (a process killed between steps 2 and 4) is rolled forward, since
its request was validated and logged; a torn last log line (killed during
step 2) is dropped, and the sample stays served. Either way a sample is fully
served or fully gone, never half. A file lock serialises deleters.

Nothing here imports JAX, so the command-line deleter starts quickly.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from typing import Any

from jaxsuite.unlearn import ledger

WAL_FILE = "deletions.wal"
LOCK_FILE = "deletions.lock"

StepHook = Callable[[str], None]


class WalCorruptError(ledger.LedgerCorruptError):
    """A log line other than the last is damaged."""


def _crc(record: dict[str, Any]) -> str:
    raw = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(raw).hexdigest()[:16]


def _encode(record: dict[str, Any]) -> bytes:
    return (json.dumps({**record, "crc": _crc(record)}, sort_keys=True) + "\n").encode()


def _decode(line: bytes) -> dict[str, Any] | None:
    """The record of one log line, or None if the line is damaged."""
    try:
        doc = json.loads(line)
        crc = doc.pop("crc")
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return doc if crc == _crc(doc) else None


def read_log(path: str) -> tuple[list[dict[str, Any]], int]:
    """Records of the write-ahead log and the byte length of its intact part.

    A damaged or unterminated *last* line (a write cut off by a crash) is
    left out; damage anywhere else raises.

    Raises:
      WalCorruptError: a line before the last is damaged.
    """
    if not os.path.exists(path):
        return [], 0
    with open(path, "rb") as f:
        raw = f.read()
    records, good = [], 0
    lines = raw.split(b"\n")
    for i, line in enumerate(lines):
        if not line:
            continue
        terminated = i < len(lines) - 1
        record = _decode(line) if terminated else None
        if record is None:
            if any(rest.strip() for rest in lines[i + 1 :]):
                raise WalCorruptError(
                    f"{path} line {i + 1} is corrupted; refusing to recover "
                    "deletions from a damaged log."
                )
            break
        records.append(record)
        good += len(line) + 1
    return records, good


class DeletionStore:
    """Deletion requests against one trained run directory (S3T, by truncation).

    Args:
      run_dir: the directory holding ``ledger.json`` and ``stages/``.
      recover: finish or discard an interrupted deletion on opening.

    Raises:
      FileNotFoundError: no ledger (the run has not finished training).
      LedgerCorruptError: the ledger or the log is damaged.
    """

    def __init__(self, run_dir: str, *, recover: bool = True):
        self.run_dir = os.path.abspath(run_dir)
        if not os.path.exists(os.path.join(self.run_dir, ledger.LEDGER_FILE)):
            raise FileNotFoundError(
                f"{self.run_dir} has no {ledger.LEDGER_FILE}: train the run first"
            )
        self._lock = open(os.path.join(self.run_dir, LOCK_FILE), "a")  # noqa: SIM115
        fcntl.flock(self._lock, fcntl.LOCK_EX)
        try:
            self.body = ledger.load(self.run_dir)
            self.recovered = self.recover() if recover else None
        except BaseException:
            self.close()
            raise

    @property
    def wal_path(self) -> str:
        return os.path.join(self.run_dir, WAL_FILE)

    def close(self) -> None:
        if self._lock is not None and not self._lock.closed:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    def __enter__(self) -> DeletionStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- log ----------------------------------------------------------------

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.wal_path, "ab") as f:
            f.write(_encode(record))
            f.flush()
            os.fsync(f.fileno())

    def _next_id(self, records: list[dict[str, Any]]) -> int:
        return 1 + max((r["id"] for r in records), default=0)

    # -- validation and recovery ------------------------------------------------

    def _check_checkpoints(self, effect: dict[str, Any]) -> None:
        prefix = effect["served_after"]
        if prefix is not None and not ledger.checkpoint_present(
            self.run_dir, effect["shard"], prefix
        ):
            path = ledger.checkpoint_dir(self.run_dir, effect["shard"], prefix)
            raise ledger.MissingCheckpointError(
                f"cannot delete sample {effect['sample']}: shard {effect['shard']} "
                f"would serve the stage checkpoint {path}, which is missing or "
                "unfinished. Nothing was changed."
            )

    def recover(self) -> str | None:
        """Completes or discards an interrupted deletion; returns what it did.

        Returns:
          None when the log was clean, else ``"rolled forward sample N"``,
          ``"completed sample N"`` or ``"aborted sample N (reason)"``.
        """
        records, good = read_log(self.wal_path)
        if os.path.exists(self.wal_path) and good < os.path.getsize(self.wal_path):
            with open(self.wal_path, "r+b") as f:  # Drop the torn last line.
                f.truncate(good)
                f.flush()
                os.fsync(f.fileno())
        closed = {r["id"] for r in records if r["op"] in ("commit", "abort")}
        pending = [r for r in records if r["op"] == "begin" and r["id"] not in closed]
        if not pending:
            return None
        if len(pending) > 1:
            raise WalCorruptError(
                f"{self.wal_path} holds {len(pending)} unfinished deletions; "
                "only one can be in flight"
            )
        rec = pending[0]
        sample = rec["sample"]
        body = ledger.load(self.run_dir)
        if sample in body["state"]["deleted"]:
            self._append({"id": rec["id"], "op": "commit", "sample": sample})
            self.body = body
            return f"completed sample {sample}"
        if ledger.digest(body) != rec["before"]:
            raise WalCorruptError(
                f"{self.wal_path}: the ledger changed under the unfinished "
                f"deletion of sample {sample}"
            )
        try:
            new, effect = ledger.apply_deletion(body, sample)
            self._check_checkpoints(effect)
        except ledger.LedgerError as e:
            self._append({"id": rec["id"], "op": "abort", "sample": sample})
            return f"aborted sample {sample} ({e})"
        ledger.save(self.run_dir, new)
        self._append({"id": rec["id"], "op": "commit", "sample": sample})
        self.body = new
        return f"rolled forward sample {sample}"

    # -- requests ---------------------------------------------------------------

    def delete(self, sample: int, *, on_step: StepHook | None = None) -> dict[str, Any]:
        """Deletes ``sample`` durably; returns the effect (see ``apply_deletion``).

        Args:
          sample: training sample id.
          on_step: called with ``"validated"``, ``"logged"``, ``"applied"`` and
            ``"committed"`` as each step finishes (progress, fault injection).

        Raises:
          UnknownSampleError, AlreadyDeletedError, MissingCheckpointError,
          LedgerCorruptError: nothing was changed.
        """
        hook = on_step or (lambda _: None)
        body = ledger.load(self.run_dir)  # Re-read: verifies the checksum.
        new, effect = ledger.apply_deletion(body, sample)
        self._check_checkpoints(effect)
        records, _ = read_log(self.wal_path)
        hook("validated")
        rid = self._next_id(records)
        self._append(
            {"id": rid, "op": "begin", "sample": sample, "before": ledger.digest(body)}
        )
        hook("logged")
        ledger.save(self.run_dir, new)
        hook("applied")
        self._append({"id": rid, "op": "commit", "sample": sample})
        hook("committed")
        self.body = new
        return effect

    def deleted(self) -> list[int]:
        """Deleted sample ids, in request order."""
        return list(self.body["state"]["deleted"])

    def served(self) -> dict[int, tuple[int, ...] | None]:
        """Shard -> served prefix (None: the shard needs retraining)."""
        return ledger.served(self.body)
