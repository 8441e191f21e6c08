"""S3T: exact machine unlearning with sequence-aware sharded sliced training.

Modules (imported on demand; ``deletion``, ``ledger``, ``sequences`` and
``theory`` need no JAX):

* ``sequences``: slice sequences (cyclic rotations, bipartite matching,
  prior-aware matching) and their invariants.
* ``ledger``: the provenance ledger beside the checkpoints and the deletion
  state machine (truncation, served prefixes).
* ``deletion``: durable deletion requests (write-ahead log, atomic ledger,
  crash recovery).
* ``theory``: the deletion rate ``m L H_{m B'}`` and its Monte Carlo.
* ``data``: digits split into pretraining and downstream sets, shards x slices.
* ``model``: the NNX backbone, its pretraining, adapter groups (LoRA from
  ``jaxsuite.lora``).
* ``training``: one stage as a pure function, keys per (shard, prefix), the
  device runner (``shard_map``), node checkpoints.
* ``runs``: training a run, retraining a prefix from scratch, serving.
* ``sisa``: the SISA baseline (retraining on deletion).
* ``settings``: the config read once into frozen dataclasses.
* ``evaluation``: accuracy of the served ensemble along a deletion stream.
* ``experiment`` and ``report``: the launcher's run, tables and figures.
"""
