"""Atlantic blocking in the Marshall-Molteni QG model: solver, labels, CNN and XAI.

Modules: ``sphere`` (spherical harmonics at T21 on a Gaussian grid), ``qg``
(the three-level quasi-geostrophic model), ``runs`` (long ensemble runs that
checkpoint and resume), ``blocking`` (blocking indices, events, onset
labels), ``data`` (shipped fields, CF NetCDF output, a reanalysis loader),
``learn`` (the CNN classifier, training regimes, skill), ``explain``
(expected gradients, SHAP on superpixels, sparse models), ``throughput``
(model days per second beside pyshqg), ``pyshqg_assets`` (rebuilds the
shipped fields), ``settings`` (the config read once into typed settings),
``stages``, ``training`` and ``evaluation`` (the experiment's phases),
``report`` (figures, metrics, verdict, tables), ``plots`` and
``experiment`` (the launcher's ``run``).
"""
