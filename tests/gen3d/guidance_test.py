"""Score distillation on an analytic Gaussian-mixture prior: SDS collapses to
a mode, VSD matches the mixture's spread, BSD's fine-tuning moves the prior
toward its samples; the stop-gradient form and the multi-device split are
exact."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxsuite.core import optim
from jaxsuite.gen3d import diffusion, guidance, toy

SCHED = diffusion.Schedule()
MEANS = np.array([[-1.0, 0.0], [1.0, 0.0]], np.float32)
STD = 0.3
PRIOR = toy.mixture(MEANS, [STD, STD])
T_RANGE = (0.02, 0.3)  # low noise levels: the mixture stays bimodal


def _apply(params, x_t, t, cond):
    del cond
    return toy.eps_hat(params, SCHED, x_t, t)


def _run(particles, grad_fn, steps, lr=0.05):
    tx = optax.adam(optax.cosine_decay_schedule(lr, steps, 0.02))

    @jax.jit
    def step(carry, key):
        x, opt = carry
        g = jax.grad(lambda x: grad_fn(x, key))(x)
        upd, opt = optim.update(tx, g, opt)
        return (x + upd, opt), None

    keys = jax.random.split(jax.random.PRNGKey(3), steps)
    (x, _), _ = jax.lax.scan(step, (particles, tx.init(particles)), keys)
    return x


def _sds_loss(x, key):
    c = jnp.zeros((x.shape[0], 1))
    return guidance.sds(SCHED, _apply, PRIOR, x, key, T_RANGE, c, c, 1.0).loss


def _vsd_loss(x, key, bandwidth=0.05):
    c = jnp.zeros((x.shape[0], 1))
    est = toy.kde(jax.lax.stop_gradient(x), bandwidth)  # the ideal estimator
    return guidance.vsd(
        SCHED, _apply, PRIOR, _apply, est, x, key, T_RANGE, c, c, c, 1.0
    ).loss


def _init(n=128):
    return jnp.asarray([[0.2, 0.3]]) + 0.15 * jax.random.normal(
        jax.random.PRNGKey(0), (n, 2)
    )


def test_sds_converges_to_a_mode():
    x = np.asarray(_run(_init(), _sds_loss, 500))
    # Mode seeking: every particle lands near one mean with far less spread
    # than the mixture component has.
    d = np.min(np.linalg.norm(x[:, None] - MEANS[None], axis=-1), axis=1)
    assert np.median(d) < 0.1
    side = x[:, 0] > 0
    for part in (x[side], x[~side]):
        assert len(part) == 0 or part.std(axis=0).max() < 0.3 * STD


def test_vsd_matches_the_mixtures_spread():
    x = np.asarray(_run(_init(), _vsd_loss, 500))
    side = x[:, 0] > 0
    assert 0.2 < side.mean() < 0.8  # both modes are populated
    for part, mean in ((x[side], MEANS[1]), (x[~side], MEANS[0])):
        np.testing.assert_allclose(part.mean(0), mean, atol=0.15)
        assert 0.6 * STD < part.std(axis=0).mean() < 1.4 * STD


def test_bsd_fine_tuning_moves_the_prior_toward_its_samples():
    z = jnp.array([0.4, 0.9])
    samples = z[None] + 0.05 * jax.random.normal(jax.random.PRNGKey(1), (256, 2))
    c = jnp.zeros((16, 1))
    tx = optax.adam(0.01)

    def loss(params, key):
        k1, k2 = jax.random.split(key)
        idx = jax.random.randint(k1, (16,), 0, samples.shape[0])
        return guidance.denoising_loss(SCHED, _apply, params, samples[idx], c, k2)

    @jax.jit
    def step(carry, key):
        p, opt = carry
        g = jax.grad(loss)(p, key)
        upd, opt = optim.update(tx, g, opt)
        return (optax.apply_updates(p, upd), opt), None

    keys = jax.random.split(jax.random.PRNGKey(2), 400)
    (tuned, _), _ = jax.lax.scan(step, (PRIOR, tx.init(PRIOR)), keys)

    def nearest(p):
        return float(
            np.min(np.linalg.norm(np.asarray(p["means"]) - np.asarray(z)[None], axis=1))
        )

    assert nearest(tuned) < 0.5 * nearest(PRIOR)
    eval_keys = jax.random.split(jax.random.PRNGKey(9), 64)
    mean_loss = jax.jit(lambda p: jnp.mean(jax.vmap(lambda k: loss(p, k))(eval_keys)))
    before, after = float(mean_loss(PRIOR)), float(mean_loss(tuned))
    assert after < before
    # Distilling from the tuned copy now pulls renders toward the samples.
    init = _init(64)
    c64 = jnp.zeros((64, 1))

    def bsd_loss(x, key):
        return guidance.sds(SCHED, _apply, tuned, x, key, T_RANGE, c64, c64, 1.0).loss

    x = np.asarray(_run(init, bsd_loss, 300))
    assert np.linalg.norm(x.mean(0) - np.asarray(z)) < 0.2


def test_stop_gradient_form_has_gradient_g_over_b():
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 3, 3, 2))
    g = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    grad = jax.grad(guidance.distillation_loss)(x, g)
    np.testing.assert_allclose(grad, g / 4, rtol=1e-6)
    np.testing.assert_allclose(
        guidance.distillation_loss(x, g),
        0.5 * np.sum(np.asarray(g) ** 2) / 4,
        rtol=1e-5,
    )


def test_views_split_over_devices_match_one_device():
    assert jax.device_count() == 8
    x = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
    t = jnp.arange(8) * 100 + 50
    eps = jax.random.normal(jax.random.PRNGKey(1), (8, 2))
    c = jnp.zeros((8, 1))
    est = (_apply, toy.kde(x, 0.1), c)

    def grad(shard):
        fn = lambda x, t, eps, est_params: guidance.guidance_grad(
            SCHED, _apply, PRIOR, x, t, eps, c, c, 3.0, (_apply, est_params, c), shard
        )
        return jax.jit(fn)(x, t, eps, est[1])

    a, b = grad(True), grad(False)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    w = 1 - SCHED.alphas_cumprod[np.asarray(t)]
    x_t = diffusion.q_sample(SCHED, x, t, eps)
    want = w[:, None] * (
        np.asarray(_apply(PRIOR, x_t, t, c)) - np.asarray(_apply(est[1], x_t, t, c))
    )
    np.testing.assert_allclose(b, want, rtol=1e-4, atol=1e-6)


def test_anneal_and_timesteps():
    assert guidance.anneal(0, 0, 0.98, 0.5, 200) == 0.98
    np.testing.assert_allclose(guidance.anneal(100, 0, 0.98, 0.5, 200), 0.74)
    assert guidance.anneal(5000, 0, 0.98, 0.5, 200) == 0.5
    t = guidance.sample_t(jax.random.PRNGKey(0), 2000, (0.2, 0.5), 1000)
    assert int(t.min()) == 200 and int(t.max()) == 500


def test_toy_denoiser_is_the_exact_posterior_mean():
    # Monte-Carlo check of E[eps | x_t] for one component: closed form
    # eps_hat = sqrt(1-ab) (x_t - sqrt(ab) mu) / (ab s^2 + 1 - ab).
    p = toy.mixture([[0.5, -0.2]], [0.4])
    x_t = jnp.array([[0.3, 0.1]])
    t = jnp.array([400])
    ab = SCHED.alphas_cumprod[400]
    want = np.sqrt(1 - ab) * (
        np.array([0.3, 0.1]) - np.sqrt(ab) * np.array([0.5, -0.2])
    )
    want = want / (ab * 0.16 + 1 - ab)
    np.testing.assert_allclose(toy.eps_hat(p, SCHED, x_t, t)[0], want, rtol=1e-4)
