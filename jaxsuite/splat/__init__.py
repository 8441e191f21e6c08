"""Deblurring 3D Gaussian Splatting (Lee et al., ECCV 2024) on a tile rasteriser.

Modules: ``gaussians`` (parameters, activations, covariances, spherical
harmonics), ``projection`` (EWA splatting into a camera), ``render`` (one call
from Gaussians and a camera to an image), ``blur_mlp`` (the deblurring MLP),
``scenes`` (procedural scenes and synthetic blur), ``compensation``
(sparse-point addition), ``train`` and ``experiment`` (the launcher's
comparison), ``colmap`` and ``ply`` (formats).
"""
