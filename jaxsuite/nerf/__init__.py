"""PVD: four NeRF architectures behind one block structure, and any-to-any
progressive volume distillation between them (Fang et al., AAAI 2023).

Modules: ``scenes`` (analytic scenes with exact renders and posed image
sets), ``blender`` (NeRF-Synthetic format), ``fields`` (hash grid, dense SH
grid, TensoRF VM, MLP: the pure-function API), ``modules`` (the same fields
as ``nnx.Module``s), ``occupancy`` (occupancy grid), ``renderer`` (ray
sampling, empty-space skipping by compaction into fixed-size buckets, and
compositing), ``loop`` (the timed optimisation loop and re-timing),
``trainer`` (training from posed images), ``distill`` (PVD), ``compare``
(times to the quality bar, ratios), ``report`` (metrics, tables, verdict,
figures), ``settings`` (the config read once into frozen dataclasses) and
``experiment`` (the launcher's run: phases wired together).
"""
