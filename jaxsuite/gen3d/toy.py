"""An analytic Gaussian-mixture "prior": exact noise predictions, no training.

Data ``x_0 ~ sum_k pi_k N(mu_k, s_k^2 I)`` in ``R^d``. Under the forward
process ``x_t = sqrt(ab) x_0 + sqrt(1 - ab) eps`` the noisy marginal is again
a mixture, ``sum_k pi_k N(sqrt(ab) mu_k, (ab s_k^2 + 1 - ab) I)``, so the
optimal noise prediction ``eps_hat = -sqrt(1 - ab) grad log p_t(x_t)`` is in
closed form. The parameters ``{"means" (K, d), "log_stds" (K,),
"logits" (K,)}`` are a pytree, so the same denoiser can be fine-tuned with the
denoising loss (the DreamBooth step of BSD) and a kernel density estimate of
particles (means = particles) is VSD's ideal estimator.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.gen3d import diffusion


def mixture(means, stds, weights=None) -> dict[str, jax.Array]:
    """Parameters of a mixture with ``K`` components in ``d`` dimensions.

    Args:
      means: ``(K, d)``.
      stds: ``(K,)`` isotropic standard deviations.
      weights: ``(K,)`` mixture weights (uniform when None).
    """
    means = jnp.asarray(means, jnp.float32)
    k = means.shape[0]
    w = jnp.full((k,), 1.0 / k) if weights is None else jnp.asarray(weights)
    return {
        "means": means,
        "log_stds": jnp.log(jnp.asarray(stds, jnp.float32)),
        "logits": jnp.log(w.astype(jnp.float32)),
    }


def eps_hat(
    params: dict[str, jax.Array],
    schedule: diffusion.Schedule,
    x_t: jax.Array,
    t: jax.Array,
) -> jax.Array:
    """Optimal noise prediction at ``x_t (B, d)``, timesteps ``t (B,)``."""
    ab = jnp.asarray(schedule.alphas_cumprod)[t][:, None]  # (B, 1)
    var = ab * jnp.exp(2.0 * params["log_stds"])[None] + (1.0 - ab)  # (B, K)
    mu = jnp.sqrt(ab)[:, :, None] * params["means"][None]  # (B, K, d)
    diff = x_t[:, None, :] - mu
    d = x_t.shape[-1]
    logp = (
        jax.nn.log_softmax(params["logits"])[None]
        - 0.5 * jnp.sum(diff**2, -1) / var
        - 0.5 * d * jnp.log(var)
    )
    r = jax.nn.softmax(logp, axis=-1)  # (B, K) responsibilities
    score = -jnp.sum(r[:, :, None] * diff / var[:, :, None], axis=1)
    return -jnp.sqrt(1.0 - ab) * score


def sample(params: dict[str, jax.Array], key: jax.Array, n: int) -> jax.Array:
    """``n`` exact samples ``(n, d)``."""
    k_c, k_n = jax.random.split(key)
    comp = jax.random.categorical(k_c, params["logits"], shape=(n,))
    noise = jax.random.normal(k_n, (n, params["means"].shape[1]))
    return params["means"][comp] + jnp.exp(params["log_stds"])[comp][:, None] * noise


def kde(particles: jax.Array, bandwidth: float) -> dict[str, jax.Array]:
    """A kernel density estimate of ``particles (N, d)`` as a mixture."""
    n = particles.shape[0]
    return mixture(particles, np.full((n,), bandwidth, np.float32))
