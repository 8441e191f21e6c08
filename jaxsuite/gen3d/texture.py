"""Stage 3: texture boosting on frozen geometry with SDS, VSD or BSD.

The SDF grid of the geometry stage is frozen: each view is sphere-traced and
its hit points are shaded by the colour field, which is the only 3-D
parameter trained. Variants (``variant``): ``none`` (reference losses only,
the do-nothing baseline), ``sds``, ``vsd``, and ``bsdK`` (BSD with ``K``
bootstrap cycles over the stage's steps). Losses and weights are the released
texture stage's: reference L1 x 1000 inside the eroded reference mask, mask
MSE x 100 (constant here: the geometry is frozen), distillation x 0.01,
estimator x 0.1, DreamBooth x 0.1, both UNet copies trained with AdamW
(learning rate 1e-5, eps 1e-4); timesteps in ``[0.05, 0.5 -> 0.2]`` and
SDEdit's ``t'`` the current upper end. See ``jaxsuite.gen3d.bsd`` for the
cycle.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

from jaxsuite.core import train as train_lib
from jaxsuite.gen3d import bsd, geometry, guidance, losses, objects
from jaxsuite.gen3d.settings import TextureSettings
from jaxsuite.gen3d.stages import (
    Context,
    apply_updates,
    camera_ranges,
    host_scalars,
    prompt,
    unet_apply,
)

VARIANTS = ("none", "sds", "vsd", "bsd1", "bsd2")


def parse_variant(variant: str) -> tuple[str, int]:
    """``"bsd2"`` -> ``("bsd", 2)``; other variants have 0 cycles."""
    if variant in ("none", "sds", "vsd"):
        return variant, 0
    if variant.startswith("bsd") and variant[3:].isdigit() and int(variant[3:]) > 0:
        return "bsd", int(variant[3:])
    raise ValueError(f"Unknown texture variant {variant!r}; use none, sds, vsd, bsdK.")


def erode_kernel(t: TextureSettings, size: int) -> int:
    """The released 9 x 9 erosion at 1024 px, scaled to the render ``size`` (odd)."""
    k = int(round(t.erode_kernel * size / t.erode_reference_size))
    return max(1, k - (1 - k % 2))


def _tx(t):
    return optax.adam(t.lr, b1=0.9, b2=0.99)


def _utx(t):
    return optax.adamw(t.unet_lr, eps=1e-4, weight_decay=0.01)


def render(st, sdf, color, c2w) -> geometry.Views:
    """Render of the frozen SDF shaded by the colour field ``color``."""
    cfg = st.settings
    spec = cfg.field
    return geometry.render_surface(
        sdf,
        lambda x: geometry.color(color, spec, x),
        c2w,
        cfg.size,
        cfg.fov,
        spec.bound,
    )


@functools.partial(jax.jit, static_argnums=0)
def render_views(st, sdf, color, c2w):
    """RGB renders ``(V, H, W, 3)`` for cameras ``c2w (V, 4, 4)``."""
    return jax.vmap(lambda c: render(st, sdf, color, c).rgb)(c2w)


@functools.partial(jax.jit, static_argnums=0)
def _ref_update(st, color, opt, sdf, ref, mask_e):
    t = st.settings.texture
    ref_c2w = objects.camera(0.0, 0.0)

    def loss_fn(p):
        v = render(st, sdf, p, ref_c2w)
        l1 = jnp.sum(jnp.abs(v.rgb - ref.rgb) * mask_e[..., None])
        l1 = l1 / jnp.maximum(3.0 * jnp.sum(mask_e), 1.0)
        mask = jnp.mean((v.opacity - ref.mask) ** 2)
        return t.lambda_rgb * l1 + t.lambda_mask * mask

    loss, g = jax.value_and_grad(loss_fn)(color)
    color, opt = apply_updates(_tx(t), g, opt, color)
    return color, opt, {"ref_loss": loss}


@functools.partial(jax.jit, static_argnums=(0, 1))
def _guide_update(st, kind, color, opt, est, est_opt, target, sdf, label, t_rng, k):
    t = st.settings.texture
    apply = unet_apply(st.image_graph)
    k_c, k_g, k_e = jax.random.split(k, 3)
    c2w, _, az = losses.random_cameras(k_c, t.views, *camera_ranges(st.settings))
    cond, uncond = prompt(st, label, az)
    est_cond, _ = prompt(st, label, az, view=False)
    scale = {"sds": t.cfg_sds, "vsd": t.cfg_vsd, "bsd": t.cfg_bsd}[kind]
    est_t = None if kind == "sds" else (apply, est, est_cond)

    def loss_fn(p):
        v = jax.vmap(lambda cc: render(st, sdf, p, cc))(c2w)
        x = 2.0 * v.rgb - 1.0
        g = guidance.score_distillation(
            st.schedule, apply, target, x, k_g, t_rng, cond, uncond, scale, est_t
        )
        return t.lambda_sd * g.loss, x

    (loss, x), g = jax.value_and_grad(loss_fn, has_aux=True)(color)
    color, opt = apply_updates(_tx(t), g, opt, color)
    scalars = {"guide_loss": loss}
    if est_t is not None:

        def est_loss(ep):
            return t.lambda_lora * guidance.denoising_loss(
                st.schedule, apply, ep, x, est_cond, k_e
            )

        le, ge = jax.value_and_grad(est_loss)(est)
        est, est_opt = apply_updates(_utx(t), ge, est_opt, est)
        scalars["estimator_loss"] = le
    return color, opt, est, est_opt, scalars


@functools.partial(jax.jit, static_argnums=0)
def _prior_update(st, db, db_opt, cache, color, sdf, label, ip, augment, strength, k):
    """One DreamBooth step; first (when ``augment``) an SDEdit-augmented render
    is added to the cache."""
    t = st.settings.texture
    apply = unet_apply(st.image_graph)
    k_c, k_s, k_d, k_p, k_n = jax.random.split(k, 5)

    def add(cache):
        c2w, _, az = losses.random_cameras(k_c, 1, *camera_ranges(st.settings))
        x = 2.0 * render(st, sdf, color, c2w[0]).rgb[None] - 1.0
        cond, uncond = prompt(st, label, az)
        aug = bsd.sdedit_augment(st.schedule, apply, ip, x, cond, uncond, strength, k_s)
        return bsd.push(cache, jnp.clip(aug[0], -1.0, 1.0), az[0])

    cache = jax.lax.cond(augment, add, lambda c: c, cache)
    imgs, az = bsd.draw(cache, k_d, t.db_batch)
    cond, uncond = prompt(st, label, az)
    cond = bsd.prompt_dropout(k_n, cond, uncond)

    def db_loss(dp):
        return t.lambda_pretrain * guidance.denoising_loss(
            st.schedule, apply, dp, imgs, cond, k_p
        )

    ld, gd = jax.value_and_grad(db_loss)(db)
    db, db_opt = apply_updates(_utx(t), gd, db_opt, db)
    return db, db_opt, cache, {"dreambooth_loss": ld}


def _initial_state(ctx: Context, color: geometry.Params, kind: str) -> dict:
    """The texture stage's first state: the colour field and its optimiser,
    plus the estimator (VSD, BSD) and the fine-tuned prior with its cache
    (BSD), both starting from the image prior."""
    t = ctx.settings.texture
    state = {"color": color, "opt": _tx(t).init(color)}
    if kind in ("vsd", "bsd"):
        state.update(est=ctx.image_params, est_opt=_utx(t).init(ctx.image_params))
    if kind == "bsd":
        state.update(
            db=ctx.image_params,
            db_opt=_utx(t).init(ctx.image_params),
            cache=bsd.empty_cache(ctx.settings.size),
        )
    return state


def texture_stage(
    ctx: Context, geom: dict, variant: str, workdir: str, writer=None
) -> geometry.Params:
    """Trains the colour field on frozen ``geom["sdf"]``; returns its params."""
    kind, cycles = parse_variant(variant)
    st, cfg = ctx.static, ctx.settings
    t = cfg.texture
    steps = t.steps
    sdf = jax.lax.stop_gradient(geom["sdf"])
    key = jax.random.fold_in(jax.random.PRNGKey(ctx.seed), 3)
    mask_e = losses.erode(ctx.ref.mask, erode_kernel(t, cfg.size))
    cycle = max(steps // max(cycles, 1), 2)
    every = bsd.augment_every(cycle)

    def step_fn(s, step):
        k = jax.random.fold_in(key, step)
        f = step / steps
        t_max = guidance.anneal(f, 0.0, t.t_max[0], t.t_max[1], 1.0)
        s0 = step - 1  # the released loop counts from 0
        if kind == "bsd":
            ph = bsd.phase(s0, cycle)
        else:
            ph = "ref" if s0 % 2 == 0 or kind == "none" else "guide"
        s = dict(s)
        if ph == "prior":
            aug = jnp.asarray((s0 % cycle) % every == 0)
            s["db"], s["db_opt"], s["cache"], out = _prior_update(
                st,
                s["db"],
                s["db_opt"],
                s["cache"],
                s["color"],
                sdf,
                ctx.label,
                ctx.image_params,
                aug,
                jnp.float32(t_max),
                k,
            )
        elif ph == "ref":
            s["color"], s["opt"], out = _ref_update(
                st, s["color"], s["opt"], sdf, ctx.ref, mask_e
            )
        else:
            target = s["db"] if kind == "bsd" else ctx.image_params
            t_rng = jnp.array([t.t_min, t_max], jnp.float32)
            s["color"], s["opt"], est, est_opt, out = _guide_update(
                st,
                kind,
                s["color"],
                s["opt"],
                s.get("est"),
                s.get("est_opt"),
                target,
                sdf,
                ctx.label,
                t_rng,
                k,
            )
            if kind != "sds":
                s["est"], s["est_opt"] = est, est_opt
        return s, host_scalars(f"texture/{variant}", step, out)

    state = train_lib.train_loop(
        _initial_state(ctx, geom["color"], kind),
        step_fn,
        num_steps=steps,
        workdir=workdir,
        checkpoint_every=cfg.checkpoint_every,
        writer=writer,
        log_every=cfg.log_every,
        name=f"texture_{variant}",
    )
    return state["color"]
