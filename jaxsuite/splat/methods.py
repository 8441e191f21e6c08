"""The compared methods, their settings per blur type, and training one of them.

``vanilla`` is plain 3DGS, ``deblur`` Deblurring-3DGS (the blur MLP in the
loop); ``known_blur`` (the view's true blur sub-cameras, averaged) and
``thin_lens`` (defocus only: the defocus MLP's transform with the exact
circle-of-confusion factors) are controls. :func:`train_method` builds one
method's state and steps (``train_step``) from the config and runs the
resumable ``core.train.train_loop``.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp

from jaxsuite.core import train as train_lib
from jaxsuite.splat import blur_mlp
from jaxsuite.splat import densify as densify_lib
from jaxsuite.splat import train as splat_train
from jaxsuite.splat import train_step as step_lib
from jaxsuite.splat.data import initial_gaussians

METHODS = ("vanilla", "deblur", "known_blur", "thin_lens")
TITLES = {
    "vanilla": "3DGS",
    "deblur": "Deblurring-3DGS",
    "known_blur": "known blur",
    "thin_lens": "exact factors",
}

# Keys whose ``motion_<key>`` twin holds the camera-motion variant's value.
MOTION_KEYS = (
    "lambda_s",
    "lambda_p",
    "prune_opacity",
    "max_clamp",
    "mlp_scale_bias",
    "mlp_rotation_bias",
    "mlp_rotation_factors",
    "mlp_relative_factors",
    "grad_threshold",
)


def blur_config(config: Any, blur: str) -> Any:
    """``config`` resolved for one blur type.

    The MLP and pruning keys without a prefix are the defocus variant's; for
    ``blur == "motion"`` each ``motion_<key>`` replaces ``<key>`` (see
    :data:`MOTION_KEYS`), so the two variants can be set apart.
    """
    out = config.copy_and_resolve_references()
    if blur == "motion":
        with out.unlocked():
            for key in MOTION_KEYS:
                out[key] = config[f"motion_{key}"]
    return out


def methods_for(config: Any, blur: str) -> tuple[str, ...]:
    """The configured methods that apply to ``blur`` (``thin_lens``: defocus)."""
    unknown = sorted(set(config.methods) - set(METHODS))
    if unknown or not {"vanilla", "deblur"} <= set(config.methods):
        raise ValueError(
            f"methods={tuple(config.methods)}: each must be one of {METHODS}, and "
            "'vanilla' and 'deblur' are required (the comparison)."
        )
    return tuple(m for m in config.methods if m != "thin_lens" or blur == "defocus")


def densify_settings(config: Any, blur: str, method: str) -> step_lib.DensifySettings:
    """Adaptive density control of one method (see ``densify``).

    Plain 3DGS and the controls use 3DGS's settings (gradient threshold
    ``grad_threshold``, opacity pruning at ``gs_prune_opacity``, opacity reset
    every ``opacity_reset_every`` steps, screen- and world-size pruning after
    the first reset). Deblurring-3DGS uses its code's: the blur type's
    gradient threshold and depth-based pruning threshold, no opacity reset and
    no size pruning.
    """
    if method == "deblur":
        c = blur_config(config, blur)
        return step_lib.DensifySettings(
            grad_threshold=c.grad_threshold,
            prune_opacity=c.prune_opacity,
            depth_pruning=True,
            opacity_reset_every=0,
            max_screen_size=0.0,
        )
    return step_lib.DensifySettings(
        grad_threshold=config.gs_grad_threshold,
        prune_opacity=config.gs_prune_opacity,
        depth_pruning=False,
        opacity_reset_every=config.opacity_reset_every,
        max_screen_size=config.max_screen_size,
    )


def make_steps(
    config: Any, data: dict, blur: str, method: str, key: jax.Array, optimizer: Any
) -> tuple[step_lib.Steps, step_lib.Schedule]:
    """The jitted steps of one method and when :func:`train_step.host_step`
    applies them, from ``config`` (``data``: ``data.make_data``'s dict)."""
    dset = densify_settings(config, blur, method)
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
            render_config=blur_config(config, blur),
            sh_every=config.sh_every,
            sh_degree=config.sh_degree,
            aperture=config.aperture,
            known_blur_samples=config.known_blur_samples,
        ),
        densify=step_lib.make_densify_step(
            key,
            dset,
            extent=data["extent"],
            percent_dense=config.percent_dense,
            world_size=config.prune_world_size,
            depth_axis=config.depth_axis,
        ),
        reset=step_lib.reset_opacity_step,
        compensate=step_lib.make_compensate_step(
            key,
            max_points=config.compensate_points,
            max_distance=config.compensate_distance,
        ),
    )
    schedule = step_lib.Schedule(
        densify_every=config.densify_every,
        densify_from=config.densify_from,
        densify_until=config.densify_until,
        opacity_reset_every=dset.opacity_reset_every,
        compensate_at=config.compensate_at if method == "deblur" else 0,
    )
    return steps, schedule


def train_method(
    config: Any, data: dict, blur: str, method: str, workdir: str, writer: Any
) -> tuple[splat_train.Params, int]:
    """Trains one method on one blur type (resumably, in ``workdir``).

    Args:
      config: the experiment's config (``configs/deblur3dgs.py``).
      data: ``data.make_data(config)``.
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
    key = jax.random.PRNGKey(config.seed + 7)
    mlp = None
    if method == "deblur":
        c = blur_config(config, blur)
        mlp = blur_mlp.init(
            jax.random.fold_in(key, 1),
            motion=blur == "motion",
            num_moments=config.num_moments,
            scale_bias=c.mlp_scale_bias,
            rotation_bias=c.mlp_rotation_bias,
        )
    optimizer = splat_train.make_optimizer(config, data["extent"])
    state = step_lib.init_train_state(
        initial_gaussians(config, data["gt"]),
        optimizer,
        capacity=max(config.max_gaussians, config.num_gaussians),
        mlp=mlp,
    )
    steps, schedule = make_steps(config, data, blur, method, key, optimizer)
    step_fn = functools.partial(
        step_lib.host_step,
        steps=steps,
        schedule=schedule,
        name=f"{blur}/{method}",
        capacity=config.capacity,
        max_per_tile=config.max_per_tile,
    )
    state = train_lib.train_loop(
        state,
        step_fn,
        num_steps=config.steps,
        workdir=workdir,
        checkpoint_every=config.checkpoint_every,
        writer=_Prefixed(writer, f"{blur}/{method}/"),
        log_every=config.log_every,
        name=f"{blur}_{method}",
        step_delay=config.step_delay,
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
