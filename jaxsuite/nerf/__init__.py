"""PVD: four NeRF architectures behind one block structure, and any-to-any
progressive volume distillation between them (Fang et al., AAAI 2023).

Modules: ``scenes`` (analytic scenes with exact renders and posed image
sets), ``blender`` (NeRF-Synthetic format), ``fields`` (hash grid, dense SH
grid, TensoRF VM, MLP), ``sh`` (spherical harmonics), ``occupancy``
(occupancy grid), ``renderer`` (ray sampling and compositing), ``trainer``
(training from posed images), ``distill`` (PVD) and ``experiment`` (the
launcher's run).
"""
