"""The compared methods, their settings per blur type, and training one of them.

``vanilla`` is plain 3DGS, ``deblur`` Deblurring-3DGS (the blur MLP in the
loop); ``known_blur`` (the view's true blur sub-cameras, averaged) and
``thin_lens`` (defocus only: the defocus MLP's transform with the exact
circle-of-confusion factors) are controls. :func:`train_method` builds one
method's state and steps (``train_step``) from the typed
``settings.Settings`` and runs the resumable ``core.train.train_loop``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxsuite.core import train as train_lib
from jaxsuite.splat import blur_mlp
from jaxsuite.splat import densify as densify_lib
from jaxsuite.splat import train as splat_train
from jaxsuite.splat import train_step as step_lib
from jaxsuite.splat.data import initial_gaussians
from jaxsuite.splat.settings import Settings

METHODS = ("vanilla", "deblur", "known_blur", "thin_lens")
TITLES = {
    "vanilla": "3DGS",
    "deblur": "Deblurring-3DGS",
    "known_blur": "known blur",
    "thin_lens": "exact factors",
}


def methods_for(methods: Sequence[str], blur: str) -> tuple[str, ...]:
    """Those of ``methods`` that apply to ``blur`` (``thin_lens``: defocus).

    Raises ``ValueError`` unless each is one of :data:`METHODS` and
    ``vanilla`` and ``deblur`` are among them.
    """
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not {"vanilla", "deblur"} <= set(methods):
        raise ValueError(
            f"methods={tuple(methods)}: each must be one of {METHODS}, and "
            "'vanilla' and 'deblur' are required (the comparison)."
        )
    return tuple(m for m in methods if m != "thin_lens" or blur == "defocus")


def densify_settings(
    settings: Settings, blur: str, method: str
) -> step_lib.DensifySettings:
    """Adaptive density control of one method (see ``densify``).

    Plain 3DGS and the controls use 3DGS's settings (gradient threshold
    ``grad_threshold``, opacity pruning at ``gs_prune_opacity``, opacity reset
    every ``opacity_reset_every`` steps, screen- and world-size pruning after
    the first reset). Deblurring-3DGS uses its code's: the blur type's
    gradient threshold and depth-based pruning threshold, no opacity reset and
    no size pruning.
    """
    if method == "deblur":
        c = settings.deblur(blur)
        return step_lib.DensifySettings(
            grad_threshold=c.grad_threshold,
            prune_opacity=c.prune_opacity,
            depth_pruning=True,
            opacity_reset_every=0,
            max_screen_size=0.0,
        )
    t = settings.train
    return step_lib.DensifySettings(
        grad_threshold=t.gs_grad_threshold,
        prune_opacity=t.gs_prune_opacity,
        depth_pruning=False,
        opacity_reset_every=t.opacity_reset_every,
        max_screen_size=t.max_screen_size,
    )


def make_steps(
    settings: Settings,
    data: dict,
    blur: str,
    method: str,
    key: jax.Array,
    optimizer: Any,
) -> tuple[step_lib.Steps, step_lib.Schedule]:
    """The jitted steps of one method and when :func:`train_step.host_step`
    applies them, from ``settings`` (``data``: ``data.make_data``'s dict)."""
    dset = densify_settings(settings, blur, method)
    t = settings.train
    step_data = step_lib.StepData(
        views=data["views"],
        train_ids=jnp.asarray(data["train_ids"]),
        images=data["blurry"][blur],
        blur_cameras=data["blur_cameras"][blur],
        focus=data["focus"],
    )
    steps = step_lib.Steps(
        train=step_lib.make_train_step(
            optimizer,
            key,
            step_data,
            method=method,
            raster=settings.raster,
            mlp=settings.deblur(blur),
            sh_every=t.sh_every,
            sh_degree=t.sh_degree,
            aperture=settings.data.aperture,
            known_blur_samples=t.known_blur_samples,
        ),
        densify=step_lib.make_densify_step(
            key,
            dset,
            extent=data["extent"],
            percent_dense=t.percent_dense,
            world_size=t.prune_world_size,
            depth_axis=t.depth_axis,
        ),
        reset=step_lib.reset_opacity_step,
        compensate=step_lib.make_compensate_step(
            key,
            max_points=t.compensate_points,
            max_distance=t.compensate_distance,
        ),
    )
    schedule = step_lib.Schedule(
        densify_every=t.densify_every,
        densify_from=t.densify_from,
        densify_until=t.densify_until,
        opacity_reset_every=dset.opacity_reset_every,
        compensate_at=t.compensate_at if method == "deblur" else 0,
    )
    return steps, schedule


def train_method(
    settings: Settings,
    data: dict,
    blur: str,
    method: str,
    workdir: str,
    writer: Any,
) -> tuple[splat_train.Params, int]:
    """Trains one method on one blur type (resumably, in ``workdir``).

    Args:
      settings: the experiment's settings (``settings.from_config``).
      data: ``data.make_data(settings.data, settings.raster)``.
      blur: ``"defocus"`` or ``"motion"``.
      method: one of :data:`METHODS`.
      workdir: where the checkpoints go.
      writer: a ``MetricWriter``; scalars go to ``<blur>/<method>/<name>``.

    Returns:
      ``(params, overflow_steps)``: the final parameters of the ``n`` active
      Gaussians (``means`` ``(n, 3)`` ...) and the number of steps whose
      render overflowed the workspace (a counter kept in the checkpointed
      state, so it covers the steps of an interrupted run too).
    """
    t = settings.train
    key = jax.random.PRNGKey(t.seed + 7)
    mlp = None
    if method == "deblur":
        c = settings.deblur(blur)
        mlp = blur_mlp.init(
            jax.random.fold_in(key, 1),
            motion=blur == "motion",
            num_moments=t.num_moments,
            scale_bias=c.mlp_scale_bias,
            rotation_bias=c.mlp_rotation_bias,
        )
    optimizer = splat_train.make_optimizer(settings.optimizer, data["extent"])
    state = step_lib.init_train_state(
        initial_gaussians(settings.data, data["gt"], sh_degree=t.sh_degree),
        optimizer,
        capacity=max(t.max_gaussians, settings.data.num_gaussians),
        mlp=mlp,
    )
    steps, schedule = make_steps(settings, data, blur, method, key, optimizer)
    step_fn = functools.partial(
        step_lib.host_step,
        steps=steps,
        schedule=schedule,
        name=f"{blur}/{method}",
        capacity=settings.raster.capacity,
        max_per_tile=settings.raster.max_per_tile,
    )
    state = train_lib.train_loop(
        state,
        step_fn,
        num_steps=t.steps,
        workdir=workdir,
        checkpoint_every=t.checkpoint_every,
        writer=_Prefixed(writer, f"{blur}/{method}/"),
        log_every=t.log_every,
        name=f"{blur}_{method}",
        step_delay=t.step_delay,
    )
    params = densify_lib.compact(state["params"], state["stats"].active)
    return params, int(state["overflow_steps"])


class _Prefixed:
    """A ``MetricWriter`` view that prefixes scalar names."""

    def __init__(self, writer, prefix):
        self._writer, self._prefix = writer, prefix

    def write_scalars(self, step, scalars):
        self._writer.write_scalars(
            step, {self._prefix + k: v for k, v in scalars.items()}
        )

    def flush(self):
        self._writer.flush()
