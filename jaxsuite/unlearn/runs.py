"""A trained run: every node of every shard on disk, its ledger, and serving.

:class:`Setup` binds what all runs of an experiment share (the frozen
backbone, each shard's initial head and adapters, the downstream data and
its shard x slice layout, the device runner) to the training settings.
:meth:`Setup.train` trains a run directory stage by stage (resuming: a node
whose checkpoint exists is not retrained) and writes its ledger last;
:meth:`Setup.train_chain` retrains one prefix from scratch in memory, through
the same per-device program, which is what exactness is checked against;
:meth:`Setup.served_logits` answers queries with, per shard, the surviving
prefix of greatest length, averaging logits over the shards that still have
a model.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from jaxsuite.unlearn import data as data_lib
from jaxsuite.unlearn import ledger, training
from jaxsuite.unlearn import model as model_lib
from jaxsuite.unlearn import sequences as seq_lib

Flat = training.Flat


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    """How each stage trains (the method's hyperparameters).

    Attributes:
      method: ``"s3t"`` (stage t tunes group t-1 and the head), ``"sisa"``
        or ``"full"`` (every stage tunes every group and the head).
      epochs: passes over the stage's cumulative data.
      batch_size: rows per Adam step.
      learning_rate: Adam's learning rate.
      seed: root of every stage key.
    """

    method: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int


class Setup:
    """Shared pieces of the runs of one experiment.

    Args:
      frame: the frozen backbone and tuned-leaf layout.
      init_flats: per shard, the tuned leaves before stage 1.
      x: (N, d) downstream training images; y: (N,) labels (row = sample id).
      layout: (m, L, n) sample ids per shard and slice.
      runner: device runner for the stages.
    """

    def __init__(
        self,
        frame: training.Frame,
        init_flats: Sequence[Flat],
        x: np.ndarray,
        y: np.ndarray,
        layout: np.ndarray,
        runner: training.NodeRunner,
    ):
        if len(init_flats) != layout.shape[0]:
            raise ValueError("one initial state per shard is needed")
        self.frame = frame
        self.init_flats = list(init_flats)
        self.x, self.y = np.asarray(x), np.asarray(y)
        self.layout = layout
        self.runner = runner
        self._stage_fns: dict[Any, Callable[..., Any]] = {}
        self._nodes: dict[tuple[str, int, tuple[int, ...]], Flat] = {}
        self._logits = jax.jit(frame.logits)

    @property
    def num_shards(self) -> int:
        return self.layout.shape[0]

    @property
    def num_slices(self) -> int:
        return self.layout.shape[1]

    # -- data and stage programs ------------------------------------------------

    def node_data(
        self, shard: int, prefix: Sequence[int], removed: Iterable[int] = ()
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Images (L n, d), labels (L n,) and weights (L n,) of the prefix's slices.

        The prefix's ``len(prefix) n`` rows come first; the rest is zero
        padding with weight 0. Removed samples keep their row with zeroed
        image, label 0 and weight 0, so they contribute nothing.
        """
        ids = self.layout[shard, list(prefix)].reshape(-1)
        rows = self.layout.shape[1] * self.layout.shape[2]
        x = np.zeros((rows, self.x.shape[1]), self.x.dtype)
        y = np.zeros(rows, self.y.dtype)
        w = np.zeros(rows, np.float32)
        keep = ~np.isin(ids, np.fromiter(removed, np.int64))
        x[: len(ids)][keep] = self.x[ids[keep]]
        y[: len(ids)][keep] = self.y[ids[keep]]
        w[: len(ids)][keep] = 1.0
        return x, y, w

    def _stage_fn(self, settings: TrainSettings):
        spec = training.StageSpec(
            slice_rows=self.layout.shape[2],
            num_slices=self.num_slices,
            epochs=settings.epochs,
            batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
        )
        if spec not in self._stage_fns:
            self._stage_fns[spec] = training.make_stage_fn(self.frame, spec)
        return spec, self._stage_fns[spec]

    def train_nodes(
        self,
        settings: TrainSettings,
        jobs: Sequence[tuple[int, tuple[int, ...]]],
        parents: Sequence[Flat],
        removed: dict[int, set[int]] | None = None,
        runner: training.NodeRunner | None = None,
    ) -> list[Flat]:
        """Trains the last stage of each job ``(shard, prefix)`` from its parent.

        All jobs must have prefixes of one length. ``removed`` maps a shard to
        sample ids left out of its data (SISA after deletions); ``runner``
        overrides the setup's device runner.

        Raises:
          FloatingPointError: a node's loss went non-finite (nothing saved).
        """
        if not jobs:
            return []
        stage = len(jobs[0][1])
        if any(len(p) != stage for _, p in jobs):
            raise ValueError("all jobs of a round must be at the same stage")
        spec, fn = self._stage_fn(settings)
        groups = ledger.stage_groups(settings.method, stage, self.frame.num_groups)
        removed = removed or {}
        data = [self.node_data(s, p, removed.get(s, ())) for s, p in jobs]
        keys = [training.stage_key(settings.seed, s, p) for s, p in jobs]
        steps = spec.steps(stage)
        # Setups whose models have one structure share compiled programs.
        program = (spec, self.frame.graphdef, self.frame.keys)
        flats, losses = (runner or self.runner).run(
            program,
            fn,
            self.frame.base,
            parents,
            [d[0] for d in data],
            [d[1] for d in data],
            [d[2] for d in data],
            [training.batch_schedule(k, spec, stage) for k in keys],
            [np.asarray(k) for k in keys],
            [training.group_mask(self.frame, groups)] * len(jobs),
            [steps] * len(jobs),
        )
        losses = [loss[:steps] for loss in losses]
        for (s, p), loss in zip(jobs, losses):
            bad = np.flatnonzero(~np.isfinite(loss))
            if bad.size:
                raise FloatingPointError(
                    f"training loss is not finite at step {bad[0] + 1} of stage "
                    f"{stage} (shard {s}, prefix {list(p)}); earlier stages' "
                    "checkpoints are kept"
                )
        return flats

    def warm_up(
        self, settings: TrainSettings, runner: training.NodeRunner | None = None
    ) -> float:
        """Compiles the stage program (one throw-away stage); returns seconds.

        Every stage and method shares the program, so timed training and
        retraining then measure running, not compiling.
        """
        t0 = time.perf_counter()
        self.train_nodes(settings, [(0, (0,))], [self.init_flats[0]], runner=runner)
        return time.perf_counter() - t0

    def train_chain(
        self,
        settings: TrainSettings,
        shard: int,
        prefix: Sequence[int],
        removed: Iterable[int] = (),
        *,
        start: tuple[int, Flat] | None = None,
        runner: training.NodeRunner | None = None,
    ) -> list[Flat]:
        """Trains the nodes of one prefix chain in memory; returns every stage.

        Runs stages 1..len(prefix) (or from ``start = (t, node at stage t)``)
        through the same per-device program as :meth:`train`. From scratch it
        is the reference the exactness of deletion is checked against.

        Returns:
          The tuned leaves after each stage that ran, shortest prefix first.
        """
        first, flat = start if start is not None else (0, self.init_flats[shard])
        gone = {shard: set(removed)}
        out = []
        for t in range(first + 1, len(prefix) + 1):
            (flat,) = self.train_nodes(
                settings, [(shard, tuple(prefix[:t]))], [flat], gone, runner
            )
            out.append(flat)
        return out

    # -- whole runs ---------------------------------------------------------------

    def train(
        self,
        run_dir: str,
        settings: TrainSettings,
        sequences: Sequence[Sequence[Sequence[int]]],
        *,
        log: Callable[[str], None] = lambda line: None,
    ) -> dict[str, Any]:
        """Trains every node of every shard's sequences into ``run_dir``.

        Resumes: nodes with a checkpoint are loaded, not retrained; the ledger
        is written once every node is stored, so a run with a ledger is done
        (and nothing is trained).

        Args:
          run_dir: directory for ``stages/`` and ``ledger.json``.
          settings: method and hyperparameters.
          sequences: per shard, its slice sequences.
          log: progress printer.

        Returns:
          ``{"seconds", "nodes", "nodes_trained"}`` of this call.
        """
        for shard_seqs in sequences:
            seq_lib.check_sequences([tuple(s) for s in shard_seqs], self.num_slices)
        if len(sequences) != self.num_shards:
            raise ValueError(f"{len(sequences)} sequence lists for {self.num_shards}")
        t0 = time.perf_counter()
        if os.path.exists(os.path.join(run_dir, ledger.LEDGER_FILE)):
            return {"seconds": 0.0, "nodes": 0, "nodes_trained": 0}
        memo: dict[tuple[int, tuple[int, ...]], Flat] = {}
        total = trained = 0
        with ocp.StandardCheckpointer() as ckptr:
            for stage in range(1, self.num_slices + 1):
                jobs = [
                    (s, p)
                    for s, shard_seqs in enumerate(sequences)
                    for p in seq_lib.prefixes([tuple(q) for q in shard_seqs])
                    if len(p) == stage
                ]
                total += len(jobs)
                todo = [j for j in jobs if not ledger.checkpoint_present(run_dir, *j)]
                parents = [self._parent(run_dir, memo, s, p) for s, p in todo]
                flats = self.train_nodes(settings, todo, parents)
                for (s, p), flat in zip(todo, flats):
                    training.save_node(ckptr, run_dir, s, p, flat)
                    memo[(s, p)] = flat
                ckptr.wait_until_finished()
                trained += len(todo)
                log(
                    f"{settings.method} stage {stage}/{self.num_slices}: "
                    f"{len(todo)} nodes trained, {len(jobs) - len(todo)} on disk "
                    f"({time.perf_counter() - t0:.1f} s)"
                )
        body = ledger.new_ledger(
            method=settings.method,
            sequences=sequences,
            num_slices=self.num_slices,
            num_groups=self.frame.num_groups,
            assignment=data_lib.assignment(self.layout),
            extra={
                "seed": settings.seed,
                "epochs": settings.epochs,
                "batch_size": settings.batch_size,
                "learning_rate": settings.learning_rate,
                "num_devices": self.runner.num_devices,
            },
        )
        ledger.save(run_dir, body)
        return {
            "seconds": time.perf_counter() - t0,
            "nodes": total,
            "nodes_trained": trained,
        }

    def _parent(self, run_dir, memo, shard, prefix) -> Flat:
        if len(prefix) == 1:
            return self.init_flats[shard]
        parent = (shard, tuple(prefix[:-1]))
        if parent not in memo:
            memo[parent] = training.load_node(
                run_dir, shard, parent[1], self.init_flats[shard]
            )
        return memo[parent]

    # -- serving ------------------------------------------------------------------

    def node(self, run_dir: str, shard: int, prefix: Sequence[int]) -> Flat:
        """The stored node, read once and cached."""
        key = (run_dir, shard, tuple(prefix))
        if key not in self._nodes:
            self._nodes[key] = training.load_node(
                run_dir, shard, prefix, self.init_flats[shard]
            )
        return self._nodes[key]

    def forget_cached(self, run_dir: str, shard: int) -> None:
        """Drops cached nodes of a shard (after they were retrained)."""
        for key in [k for k in self._nodes if k[0] == run_dir and k[1] == shard]:
            del self._nodes[key]

    def node_logits(
        self, run_dir: str, shard: int, prefix: Sequence[int], x: np.ndarray
    ) -> jax.Array:
        """Logits (N, C) of the stored node ``prefix`` of ``shard`` on ``x`` (N, d)."""
        return self._logits(self.node(run_dir, shard, prefix), x)

    def shard_logits(
        self, run_dir: str, body: dict[str, Any], x: np.ndarray
    ) -> dict[int, jax.Array]:
        """Logits (N, C) of each live shard's served node."""
        out = {}
        for shard, prefix in ledger.served(body).items():
            if prefix is not None:
                out[shard] = self.node_logits(run_dir, shard, prefix, x)
        return out

    def served_logits(
        self, run_dir: str, body: dict[str, Any], x: np.ndarray
    ) -> jax.Array | None:
        """Mean logits (N, C) over live shards; None when every shard is dead."""
        per_shard = self.shard_logits(run_dir, body, x)
        if not per_shard:
            return None
        return jnp.mean(jnp.stack([per_shard[s] for s in sorted(per_shard)]), axis=0)


def make_setup(
    pretrained: dict[str, Any],
    *,
    adapters: model_lib.Adapters,
    d_in: int,
    width: int,
    depth: int,
    num_classes: int,
    num_groups: int,
    seed: int,
    x: np.ndarray,
    y: np.ndarray,
    layout: np.ndarray,
    runner: training.NodeRunner,
) -> Setup:
    """Builds each shard's downstream model from the pretrained backbone.

    Shard ``s`` gets a new head and fresh adapters from ``init_key(seed, s)``;
    everything else is the pretrained backbone, frozen and shared.

    Args:
      pretrained: backbone parameters (pure dict, from ``model.pretrain``).
      adapters: the adapters to attach.
      d_in, width, depth: backbone shape; num_classes: downstream classes.
      num_groups: layer groups (S3T's stages per sequence).
      seed: root seed.
      x, y, layout: downstream data and its (m, L, n) layout.
      runner: device runner.

    Returns:
      The :class:`Setup`.
    """
    frame, inits = None, []
    for shard in range(layout.shape[0]):
        rngs = nnx.Rngs(training.init_key(seed, shard))
        model = model_lib.Backbone(d_in, width, depth, num_classes, rngs=rngs)
        model_lib.load_params(model, pretrained, skip=("head",))
        adapters.attach(model, rngs)
        shard_frame, flat = training.make_frame(model, adapters, num_groups)
        if frame is None:
            frame = shard_frame
        inits.append(flat)
    return Setup(frame, inits, x, y, layout, runner)
