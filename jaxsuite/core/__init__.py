"""Code shared by every paper; no module here knows any paper.

Modules (import the one you need; nothing is imported eagerly):

* ``config``: ``get_config(arg)`` presets and ``key=value`` overrides;
  ``config_rules``: declared ranges and types of config values.
* ``train``: workdirs, Orbax checkpoints, exact resume, progress, train loop;
  ``phases``: finished sub-runs kept by name (``PhaseCache``), ``Stopwatch``.
* ``workdir``: the workdir lock; ``finite``: stopping on NaN/inf;
  ``atomic``: the one way runs write files (temporary file, then rename).
* ``metrics``: ``MetricWriter`` (JSONL + TensorBoard) and ``results.json``;
  ``tensorboard``: event files written without TensorFlow.
* ``figures``: PNG curves, bars and image grids.
* ``image``: PSNR, SSIM, LPIPS.
* ``cameras``: intrinsics, poses, rays (conventions in its docstring).
* ``sh``: real spherical harmonics (3DGS / tcnn convention);
  ``encoding``: NeRF's frequency (positional) encoding.
* ``rendering``: volume-rendering quadrature and ray sampling.
* ``devices``: meshes, ``jax.distributed`` set-up, process-local data;
  ``multihost``: cooperating processes on localhost, standing in for hosts.
* ``optim``: the optax update every training step applies.
* ``app``: the shared launcher ``main``; ``suite``: runs every paper;
  ``tables``: markdown tables of result rows.
* ``example``: the smallest experiment that keeps the launcher contract.
"""
