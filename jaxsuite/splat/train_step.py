"""The training step of one method, its state and the step's host-side loop body.

The state is a dict (the checkpointed pytree of ``core.train.train_loop``):

* ``params``: the :data:`train.Params` of ``N`` Gaussian slots (a
  fixed-capacity buffer, see ``densify.pad_params``) and, for
  Deblurring-3DGS, the blur MLP's ``mlp``;
* ``opt``: their optax state (``train.make_optimizer``);
* ``stats``: the ``densify.Stats`` gathered since the last densification
  (``active`` ``(N,)`` bools among them);
* ``overflow_steps``: ``()`` int32, the steps whose render overflowed the
  rasteriser's workspace (kept in the state so it survives a resume).

:func:`make_train_step` builds the jitted gradient step (render one training
view as the method does, ``train.photometric_loss``, Adam, densification
statistics); :func:`make_densify_step`, :func:`reset_opacity_step` and
:func:`make_compensate_step` are the jitted state edits that
:func:`host_step` applies on their :class:`Schedule`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from absl import logging

from jaxsuite.core import optim
from jaxsuite.splat import compensation, projection, scenes
from jaxsuite.splat import densify as densify_lib
from jaxsuite.splat import gaussians as gl
from jaxsuite.splat import train as splat_train
from jaxsuite.splat.render import RasterSettings

State = dict[str, Any]
Scalars = dict[str, jax.Array]


class StepData(NamedTuple):
    """What a training step reads besides its state (closed over as constants).

    Attributes:
      views: the ``V`` cameras (``c2w`` ``(V, 4, 4)``, shared ``K`` ``(3, 3)``,
        ``width`` and ``height``).
      train_ids: ``(T,)`` int, the training views.
      images: ``(V, H, W, 3)``, the blurry images of one blur type.
      blur_cameras: ``((V, S, 4, 4), (V, S, 3, 3))``, each view's ``S`` blur
        sub-cameras (poses and intrinsics) of that blur type.
      focus: ``(V,)``, each view's focus depth.
    """

    views: scenes.Views
    train_ids: jax.Array
    images: jax.Array
    blur_cameras: tuple[jax.Array, jax.Array]
    focus: jax.Array


@dataclasses.dataclass(frozen=True)
class DensifySettings:
    """One method's adaptive density control (see ``densify``).

    Attributes:
      grad_threshold: mean screen-space gradient norm above which a Gaussian
        is cloned or split.
      prune_opacity: opacity below which a Gaussian is pruned (with
        ``depth_pruning``, the nearest Gaussians' threshold ``t_p``).
      depth_pruning: Deblurring-3DGS's depth-dependent threshold
        (``train.depth_pruning_threshold``).
      opacity_reset_every: steps between opacity resets (0: none).
      max_screen_size: screen-size pruning in pixels after the first reset
        (0: none).
    """

    grad_threshold: float
    prune_opacity: float
    depth_pruning: bool
    opacity_reset_every: int
    max_screen_size: float


@dataclasses.dataclass(frozen=True)
class Schedule:
    """When :func:`host_step` densifies, resets opacities and compensates.

    Densification every ``densify_every`` steps (0: never) from
    ``densify_from`` to ``densify_until``; an opacity reset every
    ``opacity_reset_every`` steps up to ``densify_until`` (0: never); point
    compensation once, at ``compensate_at`` (0: never).
    """

    densify_every: int
    densify_from: int
    densify_until: int
    opacity_reset_every: int
    compensate_at: int


class Steps(NamedTuple):
    """The jitted functions :func:`host_step` calls.

    ``train(state, step) -> (state, scalars)``;
    ``densify(state, step, size_pruning) -> (state, counts)``;
    ``reset(state) -> state``; ``compensate(state, step) -> (state, added)``.
    """

    train: Callable[[State, int], tuple[State, Scalars]]
    densify: Callable[[State, int, bool], tuple[State, Scalars]]
    reset: Callable[[State], State]
    compensate: Callable[[State, int], tuple[State, jax.Array]]


def init_train_state(
    gaussians: gl.Gaussians,
    optimizer: optax.GradientTransformation,
    *,
    capacity: int,
    mlp: Any = None,
) -> State:
    """The state at step 0 (see module docstring).

    Args:
      gaussians: the initial Gaussians (``n <= capacity`` of them).
      optimizer: the per-parameter Adam (``train.make_optimizer``).
      capacity: ``N``, the number of Gaussian slots.
      mlp: the blur MLP's parameters (``blur_mlp.init``), or ``None``.
    """
    params = splat_train.init_params(gaussians, mlp)
    params, stats = densify_lib.pad_params(params, capacity)
    return {
        "params": params,
        "opt": optimizer.init(params),
        "stats": stats,
        "overflow_steps": jnp.zeros((), jnp.int32),
    }


def method_render(
    params: splat_train.Params,
    offset: jax.Array,
    view: jax.Array,
    key: jax.Array,
    render: Callable,
    data: StepData,
    *,
    method: str,
    aperture: float,
    known_blur_samples: int,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training view ``view`` as ``method`` renders it.

    ``render(params, offset, c2w, K)`` renders one camera (``offset``
    ``(N, 2)``: the screen-space offset whose gradient densification reads).
    ``known_blur`` averages ``known_blur_samples`` of the view's true blur
    sub-cameras, drawn with ``key``, in linear RGB like the synthetic blur;
    ``thin_lens`` grows each Gaussian by the view's circle of confusion at
    its depth (the defocus model's exact factors, no MLP); the others render
    the view's camera.

    Returns:
      ``(image, num_intersections, overflow)``: ``(H, W, 3)``, ``()``, ``()``.
    """
    views = data.views
    if method == "known_blur":
        poses, ks = data.blur_cameras
        pick = jax.random.choice(
            jax.random.fold_in(key, 1),
            poses.shape[1],
            (known_blur_samples,),
            replace=False,
        )
        subs, counts, flows = jax.vmap(lambda c, K: render(params, offset, c, K))(
            poses[view][pick], ks[view][pick]
        )
        image = scenes.blur_average(subs)
        return image, jnp.max(counts), jnp.any(flows)
    if method == "thin_lens":
        g = splat_train.to_gaussians(params)
        grown = scenes.defocus_enlarged_scales(
            g.means, g.scales, views.c2w[view], aperture, data.focus[view]
        )
        params = dict(params, log_scales=jnp.log(grown))
    return render(params, offset, views.c2w[view], views.K)


def apply_gradients(
    state: State,
    grads: splat_train.Params,
    grad2d: jax.Array,
    view: jax.Array,
    views: scenes.Views,
    optimizer: optax.GradientTransformation,
) -> tuple[splat_train.Params, Any, densify_lib.Stats]:
    """One Adam update, and the densification statistics of view ``view``.

    ``grad2d`` ``(N, 2)``: the loss gradient of the screen-space means.

    Returns:
      The new ``(params, opt, stats)``.
    """
    params = state["params"]
    g = splat_train.to_gaussians(params)
    radii = projection.project(
        g.means,
        gl.covariance_3d(g.scales, g.rotations),
        views.c2w[view],
        views.K,
        views.width,
        views.height,
    ).radii
    stats = densify_lib.accumulate(
        state["stats"], grad2d, radii, views.width, views.height
    )
    updates, opt_state = optim.update(optimizer, grads, state["opt"], params)
    params = jax.tree.map(lambda a, b: a + b, params, updates)
    return params, opt_state, stats


def view_renderer(
    views: scenes.Views,
    *,
    sh_degree: int | jax.Array,
    background: jax.Array,
    raster: RasterSettings,
    mlp: splat_train.DeblurSettings | None,
    reference_centers: jax.Array,
    active: jax.Array,
) -> Callable[..., tuple[jax.Array, jax.Array, jax.Array]]:
    """``render(params, offset, c2w, K) -> (image, count, overflow)``.

    ``train.render_views`` at the size of ``views`` (``offset`` ``(N, 2)``,
    ``c2w`` ``(4, 4)``, ``K`` ``(3, 3)``; ``background`` ``(3,)``,
    ``reference_centers`` ``(T, 3)``, ``active`` ``(N,)``; through the blur
    MLP when ``mlp`` is given); the image is ``(H, W, 3)``.
    """

    def render(p, offset, c2w, K):
        return splat_train.render_views(
            p,
            c2w,
            K,
            width=views.width,
            height=views.height,
            sh_degree=sh_degree,
            background=background,
            raster=raster,
            mlp=mlp,
            reference_centers=reference_centers,
            active=active,
            means2d_offset=offset,
        )

    return render


def _view_loss_and_grads(
    params: splat_train.Params,
    view: jax.Array,
    key: jax.Array,
    render: Callable,
    data: StepData,
    *,
    method: str,
    aperture: float,
    known_blur_samples: int,
) -> tuple[tuple[jax.Array, ...], tuple[splat_train.Params, jax.Array]]:
    """``train.photometric_loss`` of training view ``view`` rendered as
    ``method`` does (:func:`method_render`) against its blurry image.

    Returns:
      ``((loss, num_intersections, overflow), (grads, grad2d))``: ``()``
      each; the gradients of ``params`` and of the offset ``(N, 2)``.
    """

    def loss_fn(p, offset):
        image, count, overflow = method_render(
            p,
            offset,
            view,
            key,
            render,
            data,
            method=method,
            aperture=aperture,
            known_blur_samples=known_blur_samples,
        )
        loss = splat_train.photometric_loss(image, data.images[view])
        return loss, (count, overflow)

    offset = jnp.zeros((params["means"].shape[0], 2), jnp.float32)
    (loss, (count, overflow)), grads = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True
    )(params, offset)
    return (loss, count, overflow), grads


def make_train_step(
    optimizer: optax.GradientTransformation,
    key: jax.Array,
    data: StepData,
    *,
    method: str,
    raster: RasterSettings,
    mlp: splat_train.DeblurSettings | None = None,
    sh_every: int,
    sh_degree: int,
    aperture: float,
    known_blur_samples: int,
) -> Callable[[State, int], tuple[State, Scalars]]:
    """The jitted gradient step ``(state, step) -> (state, scalars)``.

    At ``step`` it draws a training view (from ``fold_in(key, step)``),
    renders it as ``method`` does (:func:`method_render`; the SH degree rises
    by one every ``sh_every`` steps up to ``sh_degree``), takes the gradient
    of ``train.photometric_loss`` against the blurry image and applies
    :func:`apply_gradients`. ``raster`` is the rasteriser's workspace;
    ``mlp`` holds one blur type's MLP settings, which ``method == "deblur"``
    renders through (see ``train.render_views``; the other methods ignore
    it).

    Returns:
      The step; its scalars are ``loss``, ``grad_norm``, ``intersections``
      and ``overflow`` (all ``()``).
    """
    if method == "deblur" and mlp is None:
        raise ValueError("method 'deblur' needs the blur MLP's settings (mlp).")
    mlp = mlp if method == "deblur" else None
    views = data.views
    centres = views.c2w[data.train_ids][:, :3, 3]  # (T, 3)
    background = jnp.ones(3)
    num_train = len(data.train_ids)

    @jax.jit
    def train_step(state, step):
        k = jax.random.fold_in(key, step)
        v = data.train_ids[jax.random.randint(k, (), 0, num_train)]
        render = view_renderer(
            views,
            sh_degree=jnp.minimum(step // sh_every, sh_degree),
            background=background,
            raster=raster,
            mlp=mlp,
            reference_centers=centres,
            active=state["stats"].active,
        )
        (loss, count, overflow), (grads, grad2d) = _view_loss_and_grads(
            state["params"],
            v,
            k,
            render,
            data,
            method=method,
            aperture=aperture,
            known_blur_samples=known_blur_samples,
        )
        params, opt_state, stats = apply_gradients(
            state, grads, grad2d, v, views, optimizer
        )
        scalars = {
            "loss": loss,
            "grad_norm": optax.tree.norm(grads),
            "intersections": count,
            "overflow": overflow,
        }
        flows = state["overflow_steps"] + overflow.astype(jnp.int32)
        new = dict(params=params, opt=opt_state, stats=stats, overflow_steps=flows)
        return new, scalars

    return train_step


def make_densify_step(
    key: jax.Array,
    settings: DensifySettings,
    *,
    extent: float,
    percent_dense: float,
    world_size: float,
    depth_axis: int,
) -> Callable[[State, int, bool], tuple[State, Scalars]]:
    """The jitted densification ``(state, step, size_pruning) -> (state, counts)``.

    Clones, splits and prunes with ``densify.densify_and_prune`` (random
    draws from ``fold_in(key, step + 10**7)``); with
    ``settings.depth_pruning`` the opacity threshold is
    ``train.depth_pruning_threshold`` over the active Gaussians' world
    coordinate ``depth_axis``. ``size_pruning`` (static) enables the
    screen-size pruning.
    """

    @functools.partial(jax.jit, static_argnums=2)
    def densify(state, step, size_pruning):
        p = state["params"]
        thr = jnp.asarray(settings.prune_opacity)
        if settings.depth_pruning:
            # The depth range of the active Gaussians only.
            z = jnp.where(state["stats"].active[:, None], p["means"], p["means"][:1])
            thr = splat_train.depth_pruning_threshold(
                z, settings.prune_opacity, axis=depth_axis
            )
        p, o, stats, counts = densify_lib.densify_and_prune(
            p,
            state["opt"],
            state["stats"],
            jax.random.fold_in(key, step + 10**7),
            grad_threshold=settings.grad_threshold,
            prune_opacity=thr,
            extent=extent,
            percent_dense=percent_dense,
            max_screen_size=settings.max_screen_size if size_pruning else 0.0,
            world_size=world_size,
        )
        return dict(state, params=p, opt=o, stats=stats), counts

    return densify


@jax.jit
def reset_opacity_step(state: State) -> State:
    """3DGS's opacity reset (``densify.reset_opacity``) of the state."""
    p, o = densify_lib.reset_opacity(state["params"], state["opt"])
    return dict(state, params=p, opt=o)


def make_compensate_step(
    key: jax.Array, *, max_points: int, max_distance: float
) -> Callable[[State, int], tuple[State, jax.Array]]:
    """The jitted point compensation ``(state, step) -> (state, added)``.

    ``compensation.compensate`` with random draws from
    ``fold_in(key, step + 2 * 10**7)``; ``added`` ``()`` is the number of
    Gaussians it added.
    """

    @jax.jit
    def compensate(state, step):
        p, o, added, active = compensation.compensate(
            state["params"],
            state["opt"],
            jax.random.fold_in(key, step + 2 * 10**7),
            max_points=max_points,
            max_distance=max_distance,
            active=state["stats"].active,
        )
        stats = state["stats"]._replace(active=active)
        return dict(state, params=p, opt=o, stats=stats), added

    return compensate


def host_step(
    state: State,
    step: int,
    *,
    steps: Steps,
    schedule: Schedule,
    name: str,
    capacity: int,
    max_per_tile: int,
) -> tuple[State, Scalars]:
    """The loop body of ``core.train.train_loop``: a gradient step, then the
    state edits that ``schedule`` puts at ``step``.

    A render that overflowed the workspace (``capacity``, ``max_per_tile``)
    is logged as a warning naming ``name``; it is also counted in the state.
    """
    state, scalars = steps.train(state, step)
    if bool(scalars["overflow"]):
        # Reported, never silent: logged here and counted (in the state,
        # so across interruptions) in results.json.
        logging.warning(
            "%s step %d: the intersection workspace overflowed (%d "
            "needed, capacity %d, max_per_tile %d); the render was incomplete.",
            name,
            step,
            int(scalars["intersections"]),
            capacity,
            max_per_tile,
        )
    s = schedule
    reset_every = s.opacity_reset_every
    if (
        s.densify_every
        and s.densify_from <= step <= s.densify_until
        and step % s.densify_every == 0
    ):
        # 3DGS prunes by size only after the first opacity reset.
        size_pruning = bool(reset_every) and step > reset_every
        state, counts = steps.densify(state, step, size_pruning)
        scalars = dict(scalars, **{f"densify_{k}": v for k, v in counts.items()})
    if reset_every and step <= s.densify_until and step % reset_every == 0:
        state = steps.reset(state)
    if s.compensate_at and step == s.compensate_at:
        state, added = steps.compensate(state, step)
        scalars = dict(scalars, compensated=added)
    return state, scalars
