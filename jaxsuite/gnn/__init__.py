"""LSM-GNN: storage-backed GNN training with a shared multi-device feature cache.

Modules: ``graph`` (synthetic power-law graphs, reverse PageRank), ``storage``
(memory-mapped feature store with modelled I/O), ``datasets`` (OGB / IGB
loaders for files on disk), ``sampler``
(deterministic neighbour sampling with a look-ahead window), ``model``
(GraphSAGE-mean, data-parallel), ``cache`` (set-associative cache metadata and
eviction policies), ``exchange`` (the ``all_to_all`` communication layer),
``fetcher`` (the feature path: caches, victim buffer, prefetcher, storage),
``training`` (one policy's resumable training run and its summary),
``settings`` (the config read once into typed settings),
``experiment`` (the launcher's policy comparison) and ``report`` (its tables,
headline numbers and figures).
"""
