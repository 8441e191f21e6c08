"""The deblurring MLP (``GTnet``) and the Gaussian transforms it drives.

Follows the official code (``scene/blur_kernel.py``,
``gaussian_renderer/__init__.py``), which differs from the paper in places:

* Input, 91 values per Gaussian: ``PE(xyz, L=3)`` (21), ``PE(view, L=10)``
  (63), the activated scale (3) and the normalised rotation (4). ``PE(x) =
  [x, sin(2^0 x), cos(2^0 x), ..., sin(2^(L-1) x), cos(2^(L-1) x)]`` with no
  ``pi`` (the paper writes ``pi``). "View" is the camera centre repeated for
  every Gaussian, not a direction. The inputs carry no gradient
  (``.detach()`` in the code).
* Trunk ``Linear(91, 64) + ReLU`` then ``2 x [Linear(64, 64) + ReLU]``; heads
  ``s`` and ``r`` (defocus: 3 and 4 outputs; camera motion: ``3 (M+1)``,
  ``4 (M+1)`` and a position head ``p`` with ``3 M``). Xavier-normal weights
  with gain 0.1 for layers with 2 or 3 outputs, gain 1 otherwise; zero biases.
* ``delta = clip(lambda_s * out + (1 - lambda_s), 1, max_clamp)`` for scales
  and rotations; ``s' = s * delta_s`` and ``q' = q * delta_r`` with ``q`` the
  normalised rotation and ``q'`` **not** renormalised (the rasteriser does not
  normalise, so ``delta_r`` also scales and shears the covariance).
* Camera motion: position offsets are ``lambda_p * p``, not clamped (in the
  code only the scale and rotation factors are clamped), laid out
  ``(N, 3, M)``; render 0 uses ``(x, s * delta_s[..., M], q * delta_r[..., M])``
  and render ``i + 1`` uses ``(x + offset_i, s * delta_s[..., i],
  q * delta_r[..., i])``; the training
  image is the plain mean of the ``M + 1`` renders.

At test time the MLP is not used: the plain Gaussians are rendered.

Options that depart from the code, all off by default: initial head biases
(:func:`init`), no rotation factors, camera-motion offsets centred on the
plain Gaussians (:func:`blur_transforms`) and factors relative to their
smallest over the training views (:func:`factors`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxsuite.core.encoding import positional_encoding

Params = dict[str, dict[str, jax.Array]]


def input_dim(pos_freqs: int = 3, view_freqs: int = 10) -> int:
    """MLP input width: 91 for the defaults."""
    return 3 * (1 + 2 * pos_freqs) + 3 * (1 + 2 * view_freqs) + 7


def _xavier(key, n_in, n_out):
    gain = 0.1 if n_out in (2, 3) else 1.0
    std = gain * np.sqrt(2.0 / (n_in + n_out))
    return {
        "w": jax.random.normal(key, (n_in, n_out)) * std,
        "b": jnp.zeros((n_out,)),
    }


def init(
    key: jax.Array,
    *,
    motion: bool = False,
    num_moments: int = 4,
    width: int = 64,
    num_hidden: int = 3,
    pos_freqs: int = 3,
    view_freqs: int = 10,
    scale_bias: float = 0.0,
    rotation_bias: float = 0.0,
) -> Params:
    """Parameters of the MLP (``motion`` picks the camera-motion heads).

    ``scale_bias`` and ``rotation_bias`` initialise the ``s`` and ``r`` head
    biases (the code: 0). Near 0, ``lambda_s * out + 1 - lambda_s`` starts
    below the clamp's lower bound of 1, where the factor has no gradient; a
    bias with ``lambda_s * bias > lambda_s`` starts the factors just above it.
    """
    keys = jax.random.split(key, num_hidden + 3)
    dims = [input_dim(pos_freqs, view_freqs)] + [width] * num_hidden
    params = {
        f"trunk{i}": _xavier(keys[i], a, b)
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))
    }
    m = num_moments + 1 if motion else 1
    params["s"] = _xavier(keys[-3], width, 3 * m)
    params["r"] = _xavier(keys[-2], width, 4 * m)
    params["s"]["b"] = params["s"]["b"] + scale_bias
    params["r"]["b"] = params["r"]["b"] + rotation_bias
    if motion:
        params["p"] = _xavier(keys[-1], width, 3 * num_moments)
    return params


def apply(
    params: Params,
    means: jax.Array,
    scales: jax.Array,
    rotations: jax.Array,
    cam_center: jax.Array,
    *,
    pos_freqs: int = 3,
    view_freqs: int = 10,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Raw head outputs for ``N`` Gaussians.

    Args:
      params: from :func:`init`, or a :class:`BlurMLP` (then it is called).
      means: ``(N, 3)``; scales: ``(N, 3)``; rotations: ``(N, 4)`` normalised.
      cam_center: ``(3,)``.

    Returns:
      ``(s, r, p)``: ``(N, 3 m)``, ``(N, 4 m)`` and ``(N, 3 M)`` or None, with
      ``m = 1`` (defocus) or ``M + 1`` (motion).
    """
    if isinstance(params, BlurMLP):
        return params(means, scales, rotations, cam_center)
    sg = jax.lax.stop_gradient
    n = means.shape[0]
    view = jnp.broadcast_to(cam_center[None, :], (n, 3))
    x = jnp.concatenate(
        [
            positional_encoding(sg(means), pos_freqs),
            positional_encoding(view, view_freqs),
            sg(scales),
            sg(rotations),
        ],
        axis=-1,
    )
    num_trunk = sum(1 for k in params if k.startswith("trunk"))
    for i in range(num_trunk):
        layer = params[f"trunk{i}"]
        x = jax.nn.relu(x @ layer["w"] + layer["b"][None, :])
    head = lambda k: x @ params[k]["w"] + params[k]["b"][None, :]
    return head("s"), head("r"), (head("p") if "p" in params else None)


def clamp_delta(out: jax.Array, lambda_s: float, max_clamp: float) -> jax.Array:
    """``clip(lambda_s * out + 1 - lambda_s, 1, max_clamp)``."""
    return jnp.clip(lambda_s * out + (1.0 - lambda_s), 1.0, max_clamp)


def factors(
    params: Params,
    means: jax.Array,
    scales: jax.Array,
    rotations: jax.Array,
    cam_center: jax.Array,
    *,
    lambda_s: float,
    max_clamp: float,
    rotation_factors: bool = True,
    reference_centers: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Clamped factors and raw position outputs at one camera centre.

    Args:
      params, means, scales, rotations, cam_center: as in :func:`apply`.
      lambda_s, max_clamp, rotation_factors: as in :func:`blur_transforms`.
      reference_centers: ``(V, 3)`` or None (the code). Given, each factor is
        divided by its smallest value over these camera centres (which should
        include ``cam_center``), so every Gaussian is unblurred in at least one
        of those views and a growth shared by all views, which the renders
        cannot tell from larger Gaussians, is not available to the MLP.

    Returns:
      ``(delta_s (N, 3 m), delta_r (N, 4 m), p (N, 3 M) or None)``.
    """

    def clamped(c):
        s_out, r_out, p_out = apply(params, means, scales, rotations, c)
        ds = clamp_delta(s_out, lambda_s, max_clamp)
        dr = clamp_delta(r_out, lambda_s, max_clamp)
        if not rotation_factors:
            dr = jnp.ones_like(dr)
        return ds, dr, p_out

    ds, dr, p_out = clamped(cam_center)
    if reference_centers is not None:
        ref_s, ref_r, _ = jax.vmap(clamped)(reference_centers)
        ds = ds / jnp.min(ref_s, axis=0)
        dr = dr / jnp.min(ref_r, axis=0)
    return ds, dr, p_out


def position_shifts(
    p_out: jax.Array, lambda_p: float, center_offsets: bool
) -> jax.Array:
    """``(M + 1, N, 3)`` position shifts of the camera-motion renders.

    Render 0 is unshifted and render ``i + 1`` moves by ``lambda_p`` times the
    ``i``-th offset of ``p_out`` ``(N, 3 M)`` (laid out ``(N, 3, M)``);
    ``center_offsets`` subtracts the mean shift over the ``M + 1`` renders.
    """
    n, m = p_out.shape[0], p_out.shape[-1] // 3
    offsets = jnp.moveaxis((lambda_p * p_out).reshape(n, 3, m), -1, 0)
    shift = jnp.concatenate([jnp.zeros((1, n, 3)), offsets], 0)
    if center_offsets:
        shift = shift - jnp.mean(shift, axis=0, keepdims=True)
    return shift


def blur_transforms(
    params: Params,
    means: jax.Array,
    scales: jax.Array,
    rotations: jax.Array,
    cam_center: jax.Array,
    *,
    lambda_s: float = 0.01,
    lambda_p: float = 0.01,
    max_clamp: float = 1.1,
    rotation_factors: bool = True,
    center_offsets: bool = False,
    reference_centers: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-render means, scales and raw quaternions for the blurry renders.

    Args:
      params: MLP parameters (defocus or motion heads).
      means, scales, rotations: ``(N, 3)``, ``(N, 3)``, ``(N, 4)`` (normalised).
      cam_center: ``(3,)`` camera centre of the view.
      lambda_s, lambda_p, max_clamp: the code's hyper-parameters.
      rotation_factors: apply ``delta_r`` (the code); False keeps the
        quaternions, so the MLP changes only scales (and positions).
      center_offsets: camera motion only; subtract the mean position of the
        ``M + 1`` renders (the code: False, render 0 sits at the plain
        Gaussians and the others anywhere). True puts the plain Gaussians at
        the centroid of each blur path, so a shift shared by all renders, which
        the average cannot tell from a displaced scene, is not available to
        the MLP.
      reference_centers: ``(V, 3)`` training camera centres for relative
        factors (see :func:`factors`); None: the code's absolute factors.

    Returns:
      ``(means_r, scales_r, quats_r)`` of shapes ``(R, N, 3)``, ``(R, N, 3)``,
      ``(R, N, 4)``; ``R = 1`` (defocus) or ``M + 1`` (motion, render 0
      unshifted). Average the ``R`` renders.
    """
    ds, dr, p_out = factors(
        params,
        means,
        scales,
        rotations,
        cam_center,
        lambda_s=lambda_s,
        max_clamp=max_clamp,
        rotation_factors=rotation_factors,
        reference_centers=reference_centers,
    )
    n = means.shape[0]
    if p_out is None:
        return means[None], (scales * ds)[None], (rotations * dr)[None]
    m = p_out.shape[-1] // 3
    ds = ds.reshape(n, 3, m + 1)
    dr = dr.reshape(n, 4, m + 1)
    order = [m] + list(range(m))
    ds = jnp.moveaxis(ds[..., order], -1, 0)
    dr = jnp.moveaxis(dr[..., order], -1, 0)
    shift = position_shifts(p_out, lambda_p, center_offsets)
    return (
        means[None] + shift,
        scales[None] * ds,
        rotations[None] * dr,
    )


def delta_stats(
    params: Params,
    means: jax.Array,
    scales: jax.Array,
    rotations: jax.Array,
    cam_centers: jax.Array,
    *,
    lambda_s: float,
    lambda_p: float,
    max_clamp: float,
    rotation_factors: bool = True,
    center_offsets: bool = False,
    relative_factors: bool = False,
) -> dict[str, jax.Array]:
    """How much the MLP changes the Gaussians, over ``V`` camera centres.

    Args:
      params: MLP parameters.
      means, scales, rotations: ``(N, 3)``, ``(N, 3)``, ``(N, 4)``.
      cam_centers: ``(V, 3)``.
      lambda_s, lambda_p, max_clamp, rotation_factors, center_offsets: as in
        :func:`blur_transforms` (rotation factors that are off count as 1).
      relative_factors: factors relative to their smallest over
        ``cam_centers`` (``reference_centers`` of :func:`factors`).

    Returns:
      Scalars: ``scale_factor_mean`` and ``scale_factor_max`` (of ``delta_s``),
      ``scale_active_fraction`` (share of scale factors above 1, where the
      clamp's lower bound is not active and the head gets a gradient), the
      same three for the rotation factors ``delta_r``, and ``offset_mean``
      (mean ``|lambda_p p|`` over the shifted renders, or over all renders
      when centred; 0 for defocus).
    """

    def one(c):
        ds, dr, p_out = factors(
            params,
            means,
            scales,
            rotations,
            c,
            lambda_s=lambda_s,
            max_clamp=max_clamp,
            rotation_factors=rotation_factors,
            reference_centers=cam_centers if relative_factors else None,
        )
        if p_out is None:
            offset = jnp.zeros(())
        else:
            shift = position_shifts(p_out, lambda_p, center_offsets)
            moved = shift if center_offsets else shift[1:]
            offset = jnp.mean(jnp.linalg.norm(moved, axis=-1))
        return (
            jnp.mean(ds),
            jnp.max(ds),
            jnp.mean(ds > 1.0),
            jnp.mean(dr),
            jnp.max(dr),
            jnp.mean(dr > 1.0),
            offset,
        )

    out = jax.vmap(one)(cam_centers)
    names = ("scale_factor", "rotation_factor")
    stats = {}
    for i, name in enumerate(names):
        stats[f"{name}_mean"] = jnp.mean(out[3 * i])
        stats[f"{name}_max"] = jnp.max(out[3 * i + 1])
        stats[f"{name.split('_')[0]}_active_fraction"] = jnp.mean(out[3 * i + 2])
    stats["offset_mean"] = jnp.mean(out[6])
    return stats


class BlurMLP(nnx.Module):
    """``GTnet`` as an ``nnx.Module``: the layers of :func:`init`, the maths of
    :func:`apply`.

    ``module(means, scales, rotations, cam_center)`` returns the raw head
    outputs ``(s, r, p)`` exactly as :func:`apply` does on
    :meth:`to_params`; :meth:`from_params` loads a parameter dict.
    """

    def __init__(
        self,
        *,
        motion: bool = False,
        num_moments: int = 4,
        width: int = 64,
        num_hidden: int = 3,
        pos_freqs: int = 3,
        view_freqs: int = 10,
        scale_bias: float = 0.0,
        rotation_bias: float = 0.0,
        rngs: nnx.Rngs,
    ):
        self.pos_freqs, self.view_freqs = pos_freqs, view_freqs
        dims = [input_dim(pos_freqs, view_freqs)] + [width] * num_hidden

        def linear(n_in, n_out, bias=0.0):
            gain = 0.1 if n_out in (2, 3) else 1.0
            init = nnx.initializers.variance_scaling(gain**2, "fan_avg", "normal")
            bias_init = nnx.initializers.constant(bias)
            return nnx.Linear(
                n_in, n_out, kernel_init=init, bias_init=bias_init, rngs=rngs
            )

        self.trunk = nnx.List([linear(a, b) for a, b in zip(dims[:-1], dims[1:])])
        m = num_moments + 1 if motion else 1
        self.s = linear(width, 3 * m, scale_bias)
        self.r = linear(width, 4 * m, rotation_bias)
        self.p = linear(width, 3 * num_moments) if motion else None

    def __call__(self, means, scales, rotations, cam_center):
        """Raw head outputs; shapes as in :func:`apply`."""
        return apply(
            self.to_params(),
            means,
            scales,
            rotations,
            cam_center,
            pos_freqs=self.pos_freqs,
            view_freqs=self.view_freqs,
        )

    def to_params(self) -> Params:
        """The parameter dict of :func:`init` / :func:`apply`."""
        out = {
            f"trunk{i}": {"w": lin.kernel[...], "b": lin.bias[...]}
            for i, lin in enumerate(self.trunk)
        }
        for name in ("s", "r", "p"):
            lin = getattr(self, name)
            if lin is not None:
                out[name] = {"w": lin.kernel[...], "b": lin.bias[...]}
        return out

    def load_params(self, params: Params) -> BlurMLP:
        """Sets the weights from a :func:`init` dict (in place); returns self."""
        for i, lin in enumerate(self.trunk):
            lin.kernel[...] = params[f"trunk{i}"]["w"]
            lin.bias[...] = params[f"trunk{i}"]["b"]
        for name in ("s", "r", "p"):
            lin = getattr(self, name)
            if lin is not None:
                lin.kernel[...] = params[name]["w"]
                lin.bias[...] = params[name]["b"]
        return self
