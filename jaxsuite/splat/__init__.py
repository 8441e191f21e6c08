"""Deblurring 3D Gaussian Splatting (Lee et al., ECCV 2024) on a tile rasteriser.

Modules: ``gaussians`` (parameters, activations, covariances, spherical
harmonics), ``projection`` (EWA splatting into a camera), ``render`` (one call
from Gaussians and a camera, or a batch of cameras, to images), ``stages``
(the same frame as separately compiled stages, for profiling), ``blur_mlp``
(the deblurring MLP), ``scenes`` (procedural scenes and synthetic blur),
``compensation`` (sparse-point addition), ``data`` (the experiment's views,
blur and points), ``densify`` (adaptive density control), ``train``
(parameters, optimiser, loss), ``train_step`` (the training step and its
state), ``methods`` (the compared methods and their training), ``evaluate``
(test-view scores), ``report`` (metrics, figure, verdict), ``settings`` (the
config read once into typed settings), ``experiment`` (the launcher's
comparison, wiring them), ``colmap``, ``colmap_read`` and ``ply`` (formats).
"""
