"""DreamCraft3D: image-to-3D with score distillation (SDS, VSD) and
bootstrapped score distillation (BSD), on small diffusion priors trained here.

Modules: ``objects`` (procedural SDF objects with exact ground truth),
``diffusion`` (noise schedule, samplers), ``unet`` (the pixel-space UNet,
Flax NNX), ``weights`` (safetensors / msgpack loaders for diffusers-style
UNet weights), ``guidance`` (SDS, VSD, BSD as pure functions), ``priors``
(prior training data and loops), ``geometry`` (radiance and SDF fields,
rendering), ``stages`` (coarse, geometry and texture stages), ``mesh``
(marching cubes, OBJ/PLY), ``evaluation`` (3-D metrics, Janus detection,
bootstrap), ``settings`` (the configs read once into typed settings) and
``experiment`` (the launchers' runs).
"""
