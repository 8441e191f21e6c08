"""DreamCraft3D's three stages as resumable optimisation loops.

1. **Coarse** (``coarse-nerf``): the hash-grid radiance field. Even steps fit
   the reference view (colour MSE x 1000, mask MSE x 100, relative depth x
   0.05); odd steps distil from both priors (image prior, CFG 20, x 0.1; view
   prior with the reference image and relative camera, CFG 5, x 0.1) with
   sparsity and opaqueness regularisers (0.1 -> 10 at 40% of the steps).
   Timesteps anneal from ``[0.7, 0.85]`` to ``[0.2, 0.5]`` and the random views
   widen from the reference view over the first 4% of the steps; hash levels
   switch on progressively.
2. **Geometry**: an SDF grid initialised from the coarse density, trained
   with the reference losses and guidance every step: 3 of 4 steps guide the
   camera-space normal map with the image prior (normal modality), 1 of 4
   the colour render with both priors; eikonal and Laplacian smoothness
   (10 -> 1 between 20% and 40% of the steps, the released normal-consistency
   schedule).
3. **Texture**: the SDF frozen, the colour field refined with the reference
   (L1 x 1000) and a guidance variant: ``none`` (reference only), ``sds``
   (CFG 100), ``vsd`` (CFG 7.5, estimator copy), ``bsd`` (CFG 2, DreamBooth
   copy and estimator copy, ``cycles`` bootstrap rounds); ``t`` in
   ``[0.05, 0.5 -> 0.2]``.

Every stage's loop is ``jaxsuite.core.train.train_loop``: Orbax checkpoints
under ``workdir/checkpoints/<name>``, exact resume (all randomness from
``fold_in(key, step)``), and a non-finite loss stops the run with the stage,
quantity and step named. The jitted update functions live at module level and
take every array (reference, priors' weights, parameters) as an argument and
only hashable settings (:class:`Static`) as static arguments, so they compile
once per experiment, not once per object.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.core import finite, optim
from jaxsuite.core import train as train_lib
from jaxsuite.gen3d import diffusion, geometry, guidance, losses, objects, priors
from jaxsuite.gen3d.settings import Settings


class Static(NamedTuple):
    """Hashable settings (static under ``jit``): the experiment's settings,
    the priors' graph definitions and the noise schedule."""

    settings: Settings
    image_graph: Any
    view_graph: Any
    schedule: diffusion.Schedule


class Context(NamedTuple):
    """What every stage needs: the input, the priors and the settings."""

    ref: losses.Reference
    label: jax.Array  # (4,) the object's class and attributes (the prompt)
    image_params: Any
    view_params: Any
    static: Static
    seed: int = 0

    @property
    def settings(self) -> Settings:
        return self.static.settings


def make_context(ref, label, image_model, view_model, schedule, settings, seed=0):
    """A :class:`Context` from NNX models and the experiment's
    :class:`settings.Settings`."""
    ig, ip = nnx.split(image_model)
    vg, vp = nnx.split(view_model)
    return Context(
        ref, jnp.asarray(label), ip, vp, Static(settings, ig, vg, schedule), seed
    )


def unet_apply(graphdef: Any) -> guidance.Apply:
    """``apply(params, x, t, cond)`` of an NNX UNet split into ``graphdef``."""
    return lambda params, x, t, c: nnx.merge(graphdef, params)(x, t, c)


def host_scalars(stage: str, step: int, scalars: dict) -> dict:
    """``scalars`` as Python floats; raises :class:`core.finite.NonFiniteError`
    (a ``FloatingPointError``) naming ``stage`` if one is not finite, before
    the step's state would be checkpointed."""
    finite.check_scalars(step, scalars, where=stage)
    return {k: float(v) for k, v in scalars.items()}


def prompt(st: Static, label, az, normal: bool = False, view: bool = True):
    """View-dependent (or view-independent) prompt and its null prompt."""
    groups = st.settings.prompt_groups
    if not view:
        groups = tuple(g for g in groups if g != "view")
    cond = priors.image_condition(label, az, normal, groups)
    return cond, priors.null_condition(cond)


def _ref_losses(v: geometry.Views, ref: losses.Reference, c: Any) -> jax.Array:
    return (
        c.lambda_rgb * jnp.mean((v.rgb - ref.rgb) ** 2)
        + c.lambda_mask * jnp.mean((v.opacity - ref.mask) ** 2)
        + c.lambda_depth_rel * losses.pearson_depth_loss(v.depth, ref)
    )


def image_sds(st, label, ip, x, az, key, t_range, scale, normal=False):
    cond, uncond = prompt(st, label, az, normal)
    return guidance.score_distillation(
        st.schedule,
        unet_apply(st.image_graph),
        ip,
        x,
        key,
        t_range,
        cond,
        uncond,
        scale,
    )


def view_sds(st, ref, vp, x, el, az, key, t_range, scale):
    cam = priors.camera_condition(0.0, 0.0, el, az)
    r = jnp.broadcast_to(2.0 * ref.rgb - 1.0, x.shape)
    apply = guidance.concat_apply(unet_apply(st.view_graph))
    return guidance.score_distillation(
        st.schedule,
        apply,
        vp,
        x,
        key,
        t_range,
        (cam, r),
        (jnp.zeros_like(cam), jnp.zeros_like(r)),
        scale,
    )


def apply_updates(tx, grads, opt, params):
    upd, opt = optim.update(tx, grads, opt, params)
    return optax.apply_updates(params, upd), opt


def camera_ranges(
    settings: Settings,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The random views' ``(elevation_range, azimuth_range)`` in degrees."""
    return settings.elevation_range, settings.azimuth_range


# ----------------------------------------------------------------------------
# Stage 1: coarse radiance field.


def band_levels(f: float, start: int, total: int, band_start: float, every: float):
    """Hash levels on at training fraction ``f``: ``start`` until
    ``band_start``, then one more every ``every`` (DreamCraft3D: level 8 of 16,
    +1 every 500 of 5000 steps from step 2000)."""
    if f < band_start:
        return start
    return int(min(total, start + 1 + int((f - band_start) / max(every, 1e-9))))


def _coarse_tx(c):
    return optax.adam(c.lr, b1=0.9, b2=0.99)


def _coarse_render(st, p, c2w, levels, k):
    cfg = st.settings
    return geometry.render_field(
        p, cfg.field, c2w, cfg.size, cfg.fov, cfg.coarse.num_samples, levels, k
    )


@functools.partial(jax.jit, static_argnums=0)
def _coarse_ref_update(st, params, opt, ref, levels, k):
    c = st.settings.coarse
    ref_c2w = objects.camera(0.0, 0.0)

    def loss_fn(p):
        return _ref_losses(_coarse_render(st, p, ref_c2w, levels, k), ref, c)

    loss, g = jax.value_and_grad(loss_fn)(params)
    params, opt = apply_updates(_coarse_tx(c), g, opt, params)
    return params, opt, {"ref_loss": loss}


@functools.partial(jax.jit, static_argnums=0)
def _coarse_guide_update(
    st, params, opt, ref, label, ip, vp, levels, t_rng, el_rng, az_rng, w_sp, w_op, k
):
    c = st.settings.coarse
    k_c, k_r, k_i, k_v = jax.random.split(k, 4)
    c2w, el, az = losses.random_cameras(k_c, c.views, el_rng, az_rng)
    keys = jax.random.split(k_r, c.views)

    def loss_fn(p):
        v = jax.vmap(lambda cc, kk: _coarse_render(st, p, cc, levels, kk))(c2w, keys)
        x = 2.0 * v.rgb - 1.0
        gi = image_sds(st, label, ip, x, az, k_i, t_rng, c.cfg_image)
        gv = view_sds(st, ref, vp, x, el, az, k_v, t_rng, c.cfg_view)
        reg = w_sp * losses.sparsity_loss(v.opacity)
        reg = reg + w_op * losses.opaque_loss(v.opacity)
        total = c.lambda_sd * gi.loss + c.lambda_3d_sd * gv.loss + reg
        return total, (gi.loss, gv.loss)

    (loss, (li, lv)), g = jax.value_and_grad(loss_fn, has_aux=True)(params)
    params, opt = apply_updates(_coarse_tx(c), g, opt, params)
    return params, opt, {"guide_loss": loss, "sds_image": li, "sds_view": lv}


def coarse_stage(ctx: Context, workdir: str, writer=None) -> geometry.Params:
    """Trains the coarse radiance field; returns its parameters."""
    st, cfg = ctx.static, ctx.settings
    c, spec = cfg.coarse, cfg.field
    steps = c.steps
    key = jax.random.fold_in(jax.random.PRNGKey(ctx.seed), 1)
    params = geometry.init_field(key, spec)

    def step_fn(state, step):
        k = jax.random.fold_in(key, step)
        f = step / steps
        levels = band_levels(
            f, c.band_start_level, spec.hash_levels, c.band_start, c.band_every
        )
        p, o = state["params"], state["opt"]
        if step % 2 == 0:
            p, o, s = _coarse_ref_update(st, p, o, ctx.ref, levels, k)
        else:
            t_rng = jnp.array(
                [
                    guidance.anneal(f, 0, c.t_min[0], c.t_min[1], c.anneal_until),
                    guidance.anneal(f, 0, c.t_max[0], c.t_max[1], c.anneal_until),
                ],
                jnp.float32,
            )
            el, az = losses.progressive_ranges(
                step, int(c.progressive_until * steps), *camera_ranges(cfg)
            )
            w_sp = guidance.anneal(f, c.reg_switch, *c.lambda_sparsity, c.reg_switch)
            w_op = guidance.anneal(f, c.reg_switch, *c.lambda_opaque, c.reg_switch)
            p, o, s = _coarse_guide_update(
                st,
                p,
                o,
                ctx.ref,
                ctx.label,
                ctx.image_params,
                ctx.view_params,
                levels,
                t_rng,
                jnp.array(el, jnp.float32),
                jnp.array(az, jnp.float32),
                jnp.float32(w_sp),
                jnp.float32(w_op),
                k,
            )
        return {"params": p, "opt": o}, host_scalars("coarse", step, s)

    state = {"params": params, "opt": _coarse_tx(c).init(params)}
    state = train_lib.train_loop(
        state,
        step_fn,
        num_steps=steps,
        workdir=workdir,
        checkpoint_every=cfg.checkpoint_every,
        writer=writer,
        log_every=cfg.log_every,
        name="coarse",
    )
    return state["params"]


# ----------------------------------------------------------------------------
# Stage 2: geometry (SDF grid).


def sdf_from_coarse(params: geometry.Params, ctx: Context) -> jax.Array:
    """The geometry stage's initial SDF grid from the coarse density."""
    g, spec = ctx.settings.geometry, ctx.settings.field
    dens = geometry.field_density_grid(params, spec, g.grid)
    return jnp.asarray(
        geometry.sdf_from_density(np.asarray(dens), g.iso_threshold, spec.bound)
    )


def camera_normals(v: geometry.Views, c2w: jax.Array) -> jax.Array:
    """Normal maps ``(B, H, W, 3)`` in ``[0, 1]`` on white, camera space."""
    n_cam = jnp.einsum("bji,bhwj->bhwi", c2w[:, :3, :3], v.normal)
    o = v.opacity[..., None]
    return 0.5 * n_cam + 0.5 * o + (1.0 - o)


def _geometry_tx(g, params):
    labels = {"sdf": "sdf", "color": jax.tree.map(lambda _: "color", params["color"])}
    return optax.multi_transform(
        {
            "sdf": optax.adam(g.lr, b1=0.9, b2=0.99),
            "color": optax.adam(g.color_lr, b1=0.9, b2=0.99),
        },
        labels,
    )


def _geometry_render(st, p, c2w):
    cfg = st.settings
    g, spec = cfg.geometry, cfg.field
    color_fn = lambda x: geometry.color(p["color"], spec, x)
    return geometry.render_sdf(
        p["sdf"],
        color_fn,
        c2w,
        cfg.size,
        cfg.fov,
        spec.bound,
        g.beta,
        g.num_samples,
        g.band,
    )


@functools.partial(jax.jit, static_argnums=(0, 1))
def _geometry_update(st, normal_step, params, opt, ref, label, ip, vp, w_smooth, k):
    cfg = st.settings
    g, bound = cfg.geometry, cfg.field.bound
    k_c, k_i, k_v = jax.random.split(k, 3)
    c2w, el, az = losses.random_cameras(k_c, g.views, *camera_ranges(cfg))
    ref_c2w = objects.camera(0.0, 0.0)

    def loss_fn(p):
        total = _ref_losses(_geometry_render(st, p, ref_c2w), ref, g)
        v = jax.vmap(lambda cc: _geometry_render(st, p, cc))(c2w)
        if normal_step:
            x = 2.0 * camera_normals(v, c2w) - 1.0
            gi = image_sds(st, label, ip, x, az, k_i, g.t_image, g.cfg_image, True)
            guide = g.lambda_sd * gi.loss
        else:
            x = 2.0 * v.rgb - 1.0
            gi = image_sds(st, label, ip, x, az, k_i, g.t_image, g.cfg_image)
            gv = view_sds(st, ref, vp, x, el, az, k_v, g.t_view, g.cfg_view)
            guide = g.lambda_sd * gi.loss + g.lambda_3d_sd * gv.loss
        reg = g.lambda_eikonal * geometry.eikonal_loss(p["sdf"], bound)
        reg = reg + w_smooth * geometry.laplacian_loss(p["sdf"], bound)
        return total + guide + reg, guide

    (loss, guide), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    params, opt = apply_updates(_geometry_tx(g, params), grads, opt, params)
    return params, opt, {"geometry_loss": loss, "guide_loss": guide}


def geometry_stage(
    ctx: Context, coarse_params: geometry.Params, workdir: str, writer=None
) -> dict:
    """Trains the SDF grid (and colour) from the coarse field; returns both."""
    st, cfg = ctx.static, ctx.settings
    g = cfg.geometry
    steps = g.steps
    key = jax.random.fold_in(jax.random.PRNGKey(ctx.seed), 2)

    def step_fn(state, step):
        f = step / steps
        w_smooth = guidance.anneal(f, g.smooth_from, *g.lambda_smooth, g.smooth_until)
        normal_step = step % g.n_rgb != 0
        p, o, s = _geometry_update(
            st,
            normal_step,
            state["params"],
            state["opt"],
            ctx.ref,
            ctx.label,
            ctx.image_params,
            ctx.view_params,
            jnp.float32(w_smooth),
            jax.random.fold_in(key, step),
        )
        return {"params": p, "opt": o}, host_scalars("geometry", step, s)

    params = {"sdf": sdf_from_coarse(coarse_params, ctx), "color": coarse_params}
    state = {"params": params, "opt": _geometry_tx(g, params).init(params)}
    state = train_lib.train_loop(
        state,
        step_fn,
        num_steps=steps,
        workdir=workdir,
        checkpoint_every=cfg.checkpoint_every,
        writer=writer,
        log_every=cfg.log_every,
        name="geometry",
    )
    return state["params"]
