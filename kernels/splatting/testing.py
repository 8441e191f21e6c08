"""Random projected-Gaussian frames for tests, benchmarks and the GPU check."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_scene(
    key: jax.Array, n: int, width: int, height: int, scale: float = 3.0
) -> tuple[jax.Array, ...]:
    """``n`` random screen-space Gaussians over a ``height x width`` image.

    Returns:
      ``(means2d (N, 2), conics (N, 3), colors (N, 3), opacities (N,),
      depths (N,), radii (N,) int32)``, radii by the 3-sigma rule of the
      original rasteriser; ``scale`` sets the typical standard deviation in
      pixels.
    """
    k = jax.random.split(key, 5)
    size = jnp.array([[width, height]], jnp.float32)
    means = jax.random.uniform(k[0], (n, 2)) * size
    lower = jax.random.normal(k[1], (n, 2, 2)) * scale
    cov = lower @ jnp.swapaxes(lower, -1, -2) + 0.3 * jnp.eye(2)[None]
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] ** 2
    conics = jnp.stack(
        [cov[:, 1, 1] / det, -cov[:, 0, 1] / det, cov[:, 0, 0] / det], axis=-1
    )
    mid = 0.5 * (cov[:, 0, 0] + cov[:, 1, 1])
    lam = mid + jnp.sqrt(jnp.maximum(0.1, mid**2 - det))
    radii = jnp.ceil(3.0 * jnp.sqrt(lam)).astype(jnp.int32)
    colors = jax.random.uniform(k[2], (n, 3))
    opacities = jax.random.uniform(k[3], (n,), minval=0.2, maxval=1.0)
    depths = jax.random.uniform(k[4], (n,), minval=1.0, maxval=5.0)
    return means, conics, colors, opacities, depths, radii


def gpu_check_case(smoke: bool) -> dict:
    """Inputs and tolerance for checking the kernel against the reference.

    Returns a dict with ``fn(means2d, conics, colors, opacities, *,
    implementation, interpret) -> image`` (depths and radii are bound),
    ``args``, ``diff_argnums``, ``rtol``, ``size`` (pixels) and ``note``.
    The reference is dense (``H W N`` memory), so the full size stays modest.
    """
    from . import api

    n, width, height = (40, 32, 24) if smoke else (4096, 256, 256)
    means, conics, colors, opacities, depths, radii = random_scene(
        jax.random.key(0), n, width, height, scale=3.0 if smoke else 4.0
    )
    capacity = 1 << (12 if smoke else 18)

    def fn(means, conics, colors, opacities, *, implementation, interpret):
        return api.rasterize(
            means,
            conics,
            colors,
            opacities,
            depths,
            radii,
            width=width,
            height=height,
            capacity=capacity,
            implementation=implementation,
            interpret=interpret,
        ).image

    return dict(
        fn=fn,
        args=(means, conics, colors, opacities),
        diff_argnums=(0, 1, 2, 3),
        rtol=1e-4,
        size=width * height,
        note=f"N={n} {width}x{height} capacity={capacity}",
    )
