"""The two diffusion priors: conditions, training data and training steps.

**Image prior** (the role of DeepFloyd IF / Stable Diffusion). Its condition
is a multi-hot "prompt" of ``COND_DIM`` entries in groups (see
``COND_GROUPS``): object class, colour A, colour B, pattern, view direction
(DreamFusion's view-dependent prompt: front ``|az| <= 45``, back
``|az| >= 135``, side otherwise, azimuth relative to the object's front) and
modality (0: an RGB render, 1: a camera-space normal map, for the geometry
stage's normal guidance). Training drops each group independently (and the
whole prompt 10% of the time, for classifier-free guidance), so any subset of
groups is a valid prompt; the modality flag is never dropped.

**View prior** (the role of Zero-1-to-3). Input: the noisy target view
concatenated with the reference image; condition: the relative camera
``[d_polar, sin d_azimuth, cos d_azimuth, d_radius]`` (Zero-1-to-3's ``T``,
angles in radians, polar = 90 deg - elevation). Both are zeroed 10% of the
time for classifier-free guidance.

Data: procedural objects (``jaxsuite.gen3d.objects``) rendered at random
views (elevation uniform in ``[-10, 45]`` deg, DreamCraft3D's range; view 0
is the reference view, elevation 0 and azimuth 0). Images are in ``[-1, 1]``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxsuite.core import optim
from jaxsuite.gen3d import diffusion, objects, unet

COND_GROUPS = {
    "class": (0, 4),
    "color_a": (4, 10),
    "color_b": (10, 16),
    "pattern": (16, 19),
    "view": (19, 22),
    "modality": (22, 23),
}
COND_DIM = 23
CAMERA_DIM = 4
ELEVATION_RANGE = (-10.0, 45.0)
GROUP_DROP = {"class": 0.1, "color_a": 0.5, "color_b": 0.5, "pattern": 0.5, "view": 0.2}
NULL_DROP = 0.1


def view_bucket(azimuth_deg: jax.typing.ArrayLike) -> jax.Array:
    """0 front (``|az| <= 45``), 1 side, 2 back (``|az| >= 135``)."""
    az = (jnp.asarray(azimuth_deg, jnp.float32) + 180.0) % 360.0 - 180.0
    a = jnp.abs(az)
    return jnp.where(a <= 45.0, 0, jnp.where(a >= 135.0, 2, 1)).astype(jnp.int32)


def image_condition(
    label: jax.Array,
    azimuth_deg: jax.typing.ArrayLike,
    normal: jax.typing.ArrayLike = False,
    groups: tuple[str, ...] = ("class", "view"),
) -> jax.Array:
    """The image prior's prompt vector ``(..., COND_DIM)``.

    Args:
      label: ``(..., 4)`` int ``[class, colour A, colour B, pattern]``.
      azimuth_deg: ``(...)`` view azimuth relative to the object's front.
      normal: ``(...)`` whether the image is a normal map.
      groups: which groups the prompt states (the modality is always stated).
    """
    label = jnp.asarray(label, jnp.int32)
    az = jnp.asarray(azimuth_deg, jnp.float32)
    batch = jnp.broadcast_shapes(label.shape[:-1], az.shape)
    label = jnp.broadcast_to(label, batch + (4,))
    parts = {
        "class": jax.nn.one_hot(label[..., 0], 4),
        "color_a": jax.nn.one_hot(label[..., 1], 6),
        "color_b": jax.nn.one_hot(label[..., 2], 6),
        "pattern": jax.nn.one_hot(label[..., 3], 3),
        "view": jax.nn.one_hot(jnp.broadcast_to(view_bucket(az), batch), 3),
    }
    out = [
        parts[g] if g in groups else jnp.zeros_like(parts[g])
        for g in ("class", "color_a", "color_b", "pattern", "view")
    ]
    mod = jnp.broadcast_to(jnp.asarray(normal, jnp.float32), batch)[..., None]
    return jnp.concatenate(out + [mod], axis=-1)


def null_condition(cond: jax.Array) -> jax.Array:
    """The unconditional prompt: all groups dropped, modality kept."""
    keep = np.zeros(COND_DIM, np.float32)
    keep[COND_GROUPS["modality"][0]] = 1.0
    return cond * jnp.broadcast_to(jnp.asarray(keep), cond.shape)


def camera_condition(
    ref_elev: jax.typing.ArrayLike,
    ref_az: jax.typing.ArrayLike,
    tgt_elev: jax.typing.ArrayLike,
    tgt_az: jax.typing.ArrayLike,
    d_radius: jax.typing.ArrayLike = 0.0,
) -> jax.Array:
    """Zero-1-to-3's relative camera ``(..., 4)`` from degrees."""
    rad = lambda v: jnp.deg2rad(jnp.asarray(v, jnp.float32))
    d_polar = rad(ref_elev) - rad(tgt_elev)  # polar = 90 - elevation
    d_az = rad(tgt_az) - rad(ref_az)
    d_polar, d_az, d_r = jnp.broadcast_arrays(
        d_polar, d_az, jnp.asarray(d_radius, jnp.float32)
    )
    return jnp.stack([d_polar, jnp.sin(d_az), jnp.cos(d_az), d_r], axis=-1)


def image_prior_config(channels=(32, 64, 64), size: int = 32) -> unet.UNetConfig:
    return unet.UNetConfig(
        sample_size=size, block_out_channels=tuple(channels), class_embed_dim=COND_DIM
    )


def view_prior_config(channels=(32, 64, 64), size: int = 32) -> unet.UNetConfig:
    return unet.UNetConfig(
        sample_size=size,
        in_channels=6,
        block_out_channels=tuple(channels),
        class_embed_dim=CAMERA_DIM,
    )


# ----------------------------------------------------------------------------
# Data.


def camera_normal_map(normal: jax.Array, mask: jax.Array, c2w: jax.Array):
    """Camera-space normal map in ``[0, 1]`` on white: ``(V, H, W, 3)``.

    Args:
      normal: world normals ``(V, H, W, 3)``; mask ``(V, H, W)``; c2w
        ``(V, 4, 4)``.
    """
    n_cam = jnp.einsum("vji,vhwj->vhwi", c2w[:, :3, :3], normal)
    m = mask[..., None]
    return m * (0.5 * n_cam + 0.5) + (1.0 - m)


def random_views(key: jax.Array, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Elevations and azimuths (degrees) of ``n`` views; view 0 is (0, 0)."""
    k1, k2 = jax.random.split(key)
    el = np.array(jax.random.uniform(k1, (n,), minval=-10.0, maxval=45.0))
    az = np.array(jax.random.uniform(k2, (n,), minval=-180.0, maxval=180.0))
    el[0], az[0] = 0.0, 0.0
    return el, az


def make_dataset(
    seeds: list[int], views: int, size: int, key: jax.Array
) -> dict[str, np.ndarray]:
    """Renders ``views`` views of each object ``sample_spec(seed)``.

    Returns:
      ``rgb`` and ``normal`` uint8 ``(N, V, size, size, 3)``, ``elev`` and
      ``azim`` float32 ``(N, V)`` (degrees), ``label`` int32 ``(N, 4)``.
    """

    @jax.jit
    def one(spec, el, az):
        c2w = objects.camera(el, az)
        out = objects.render(spec, c2w, size)
        return out.rgb, camera_normal_map(out.normal, out.mask, c2w)

    to_u8 = lambda x: np.round(np.clip(np.asarray(x), 0, 1) * 255).astype(np.uint8)
    rgb, nrm, els, azs, labels = [], [], [], [], []
    for i, seed in enumerate(seeds):
        el, az = random_views(jax.random.fold_in(key, i), views)
        spec = objects.sample_spec(seed)
        r, n = one(spec, jnp.asarray(el), jnp.asarray(az))
        rgb.append(to_u8(r))
        nrm.append(to_u8(n))
        els.append(el)
        azs.append(az)
        labels.append(np.asarray(spec.label))
    return {
        "rgb": np.stack(rgb),
        "normal": np.stack(nrm),
        "elev": np.stack(els).astype(np.float32),
        "azim": np.stack(azs).astype(np.float32),
        "label": np.stack(labels).astype(np.int32),
    }


def _u8(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32) / 127.5 - 1.0


def drop_groups(key: jax.Array, cond: jax.Array) -> jax.Array:
    """Training-time dropout of prompt groups ``cond (B, COND_DIM)``."""
    keys = jax.random.split(key, len(GROUP_DROP) + 1)
    mask = jnp.ones_like(cond)
    for k, (g, p) in zip(keys[:-1], GROUP_DROP.items()):
        lo, hi = COND_GROUPS[g]
        drop = jax.random.uniform(k, (cond.shape[0], 1)) < p
        col = (jnp.arange(COND_DIM) >= lo) & (jnp.arange(COND_DIM) < hi)
        mask = jnp.where(drop & col[None], 0.0, mask)
    cond = cond * mask
    null = jax.random.uniform(keys[-1], (cond.shape[0], 1)) < NULL_DROP
    return jnp.where(null, null_condition(cond), cond)


def image_batch(
    data: dict[str, jax.Array], key: jax.Array, batch: int, p_normal: float
) -> tuple[jax.Array, jax.Array]:
    """A training batch of the image prior: images ``(B, H, W, 3)``, prompts."""
    k_o, k_v, k_n, k_d = jax.random.split(key, 4)
    n_obj, n_view = data["rgb"].shape[:2]
    o = jax.random.randint(k_o, (batch,), 0, n_obj)
    v = jax.random.randint(k_v, (batch,), 0, n_view)
    is_n = jax.random.uniform(k_n, (batch,)) < p_normal
    x = jnp.where(is_n[:, None, None, None], data["normal"][o, v], data["rgb"][o, v])
    groups = tuple(COND_GROUPS)[:5]
    cond = image_condition(data["label"][o], data["azim"][o, v], is_n, groups)
    return _u8(x), drop_groups(k_d, cond)


def view_batch(
    data: dict[str, jax.Array], key: jax.Array, batch: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """View-prior batch: target ``(B, H, W, 3)``, reference, camera ``(B, 4)``.

    The reference is view 0 (the canonical front view) half of the time.
    """
    k_o, k_r, k_f, k_t, k_d = jax.random.split(key, 5)
    n_obj, n_view = data["rgb"].shape[:2]
    o = jax.random.randint(k_o, (batch,), 0, n_obj)
    r = jax.random.randint(k_r, (batch,), 0, n_view)
    r = jnp.where(jax.random.uniform(k_f, (batch,)) < 0.5, 0, r)
    t = jax.random.randint(k_t, (batch,), 0, n_view)
    cam = camera_condition(
        data["elev"][o, r], data["azim"][o, r], data["elev"][o, t], data["azim"][o, t]
    )
    ref = _u8(data["rgb"][o, r])
    drop = jax.random.uniform(k_d, (batch,)) < NULL_DROP
    ref = jnp.where(drop[:, None, None, None], 0.0, ref)
    cam = jnp.where(drop[:, None], 0.0, cam)
    return _u8(data["rgb"][o, t]), ref, cam


# ----------------------------------------------------------------------------
# Training.


def eps_loss(
    model: unet.UNet,
    schedule: diffusion.Schedule,
    x0: jax.Array,
    cond: jax.Array,
    key: jax.Array,
    extra: jax.Array | None = None,
) -> jax.Array:
    """Denoising loss ``E ||eps_theta(x_t, t, c) - eps||^2``, t uniform.

    ``extra`` (``(B, H, W, C')``) is concatenated to the noisy input (the view
    prior's reference image).
    """
    k_t, k_e = jax.random.split(key)
    t = jax.random.randint(k_t, (x0.shape[0],), 0, schedule.num_steps)
    eps = jax.random.normal(k_e, x0.shape)
    x_t = diffusion.q_sample(schedule, x0, t, eps)
    if extra is not None:
        x_t = jnp.concatenate([x_t, extra], axis=-1)
    return jnp.mean((model(x_t, t, cond) - eps) ** 2)


def make_optimizer(
    lr: float, steps: int, warmup: int = 100
) -> optax.GradientTransformation:
    """Adam with linear warm-up and cosine decay to ``lr / 10``, clipped at 1."""
    sched = optax.warmup_cosine_decay_schedule(
        0.0, lr, min(warmup, max(steps // 10, 1)), max(steps, 2), lr / 10
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(sched))


def train_state(model: unet.UNet, tx: optax.GradientTransformation) -> dict:
    """``{"params", "ema", "opt_state"}`` (pure pytrees) of ``model``."""
    params = nnx.state(model, nnx.Param)
    return {"params": params, "ema": params, "opt_state": tx.init(params)}


def make_step(
    graphdef: Any,
    kind: str,
    schedule: diffusion.Schedule,
    tx: optax.GradientTransformation,
    batch: int,
    p_normal: float = 0.25,
    ema_decay: float = 0.995,
):
    """Jitted ``(state, data, key) -> (state, {"loss"})`` for ``kind`` in
    ``{"image", "view"}``."""

    def loss_fn(params, data, key):
        model = nnx.merge(graphdef, params)
        k_b, k_l = jax.random.split(key)
        if kind == "image":
            x0, cond = image_batch(data, k_b, batch, p_normal)
            return eps_loss(model, schedule, x0, cond, k_l)
        x0, ref, cam = view_batch(data, k_b, batch)
        return eps_loss(model, schedule, x0, cam, k_l, extra=ref)

    @jax.jit
    def step(state, data, key):
        loss, grads = jax.value_and_grad(loss_fn)(state["params"], data, key)
        updates, opt_state = optim.update(
            tx, grads, state["opt_state"], state["params"]
        )
        params = optax.apply_updates(state["params"], updates)
        ema = jax.tree.map(
            lambda e, p: ema_decay * e + (1 - ema_decay) * p, state["ema"], params
        )
        return {"params": params, "ema": ema, "opt_state": opt_state}, {"loss": loss}

    return step


def eps_fn(model: unet.UNet, cond: jax.Array, extra: jax.Array | None = None):
    """``(x_t, t) -> eps`` of a model with a fixed condition ``(B, D)``."""

    def f(x, t):
        if extra is not None:
            x = jnp.concatenate([x, extra], axis=-1)
        return model(x, t, cond)

    return f


def guided_eps_fn(
    model: unet.UNet,
    cond: jax.Array,
    uncond: jax.Array,
    scale: float,
    extra: jax.Array | None = None,
    extra_uncond: jax.Array | None = None,
):
    """Classifier-free-guided ``(x_t, t) -> eps`` (one batched call)."""

    def f(x, t):
        xx = jnp.concatenate([x, x], axis=0)
        if extra is not None:
            xx = jnp.concatenate([xx, jnp.concatenate([extra, extra_uncond])], -1)
        out = model(xx, jnp.concatenate([t, t]), jnp.concatenate([cond, uncond]))
        e_c, e_u = jnp.split(out, 2)
        return diffusion.cfg_eps(e_c, e_u, scale)

    return f


def reference_fov_radius() -> tuple[float, float]:
    """DreamCraft3D's fixed reference camera: field of view and distance."""
    return objects.REF_FOV_DEG, objects.REF_RADIUS


def elevation_azimuth(c2w: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Elevation and azimuth (degrees) of cameras ``c2w (..., 4, 4)``."""
    eye = c2w[..., :3, 3]
    r = jnp.linalg.norm(eye, axis=-1)
    el = jnp.rad2deg(jnp.arcsin(jnp.clip(eye[..., 2] / r, -1.0, 1.0)))
    az = jnp.rad2deg(jnp.arctan2(eye[..., 1], eye[..., 0]))
    return el, az


def asset_path(kind: str) -> str:
    """Folder of a shipped prior, ``kind`` in ``{"image", "view"}``."""
    from importlib import resources

    if kind not in ("image", "view"):
        raise ValueError(f"kind must be 'image' or 'view', got {kind!r}.")
    return str(resources.files("jaxsuite") / "assets" / "gen3d" / f"{kind}_prior")
