"""QG model: pyshqg reference states, conservation, ensembles and shard_map."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxsuite.climate import data, qg


def _rel_rms(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return float(np.sqrt(np.mean(np.abs(a - b) ** 2) / np.mean(np.abs(b) ** 2)))


@pytest.fixture(scope="module")
def ref():
    return data.load_pyshqg_reference()


def test_matches_pyshqg_reference_states(ref):
    """Inversion, tendencies and one 1800 s RK4 step match pyshqg 1.0.1."""
    with jax.enable_x64(True):
        model = data.default_model()
        q = jnp.asarray(ref["q"])
        np.testing.assert_allclose(
            model.sphere.to_grid(q[:2]), ref["q_grid"], rtol=1e-11
        )
        assert _rel_rms(qg.psi_from_q(model, q), ref["psi"]) < 1e-10
        assert _rel_rms(qg.tendency(model, q), ref["tendencies"]) < 1e-6
        step = jax.jit(qg.rk4_step, static_argnums=2)(model, q, 1800.0)
        assert _rel_rms(step - q, ref["rk4"] - ref["q"]) < 1e-6
        assert _rel_rms(step, ref["rk4"]) < 1e-9
        np.testing.assert_allclose(
            qg.q_from_psi(model, qg.psi_from_q(model, q))[..., 1:, :],
            q[..., 1:, :],
            rtol=1e-10,
            atol=1e-18,
        )


def test_inviscid_unforced_run_conserves_energy_and_enstrophy(ref):
    """Drift is RK4 error: small, and falls ~dt^4 when dt halves."""
    with jax.enable_x64(True):
        model = qg.without_forcing_and_dissipation(data.default_model())
        q0 = jnp.asarray(ref["q"][:1])
        drifts = []
        for dt in (3600.0, 1800.0):
            q1, _ = qg.integrate(
                model, q0, num_saves=1, steps_per_save=int(2 * qg.DAY / dt), dt=dt
            )
            de = abs(
                float(
                    (
                        (qg.energy(model, q1) - qg.energy(model, q0))
                        / qg.energy(model, q0)
                    )[0]
                )
            )
            dz = abs(
                float(
                    (
                        (qg.enstrophy(model, q1) - qg.enstrophy(model, q0))
                        / qg.enstrophy(model, q0)
                    )[0]
                )
            )
            drifts.append((de, dz))
        (e1, z1), (e2, z2) = drifts
        assert e2 < 1e-7 and z2 < 1e-7
        assert e1 / e2 > 8 and z1 / z2 > 8
        # The full model does not conserve energy: dissipation is active.
        full = data.default_model()
        qf, _ = qg.integrate(full, q0, num_saves=1, steps_per_save=96, dt=1800.0)
        assert abs(float((qg.energy(full, qf) / qg.energy(full, q0))[0]) - 1) > 1e-4


def test_vmap_ensemble_and_shard_map_match_single_runs(ref):
    model = data.default_model(dtype=jnp.float32)
    q0 = jnp.asarray(ref["q"], jnp.complex64)  # 8 members

    def run(q):
        return qg.integrate(model, q, num_saves=2, steps_per_save=4, dt=1800.0)[0]

    batched = jax.jit(run)(q0)
    single = jax.jit(run)(q0[3])
    np.testing.assert_allclose(batched[3], single, rtol=2e-4, atol=1e-9)
    mesh = jax.make_mesh((8,), ("members",))
    sharded = qg.shard_ensemble(run, mesh)(q0)
    assert len(sharded.sharding.device_set) == 8
    np.testing.assert_allclose(sharded, batched, rtol=2e-4, atol=1e-9)


def test_roads_forcing_makes_the_sample_mean_stationary(ref):
    with jax.enable_x64(True):
        model = data.default_model()
        q = jnp.asarray(ref["q"])
        forcing = qg.roads_forcing(model, q)
        forced = model.replace(forcing=forcing)
        mean_tend = jnp.mean(qg.tendency(forced, q), axis=0)
        scale = jnp.sqrt(
            jnp.mean(
                jnp.abs(qg.tendency(model.replace(forcing=jnp.zeros_like(forcing)), q))
                ** 2
            )
        )
        assert float(jnp.sqrt(jnp.mean(jnp.abs(mean_tend) ** 2)) / scale) < 1e-12
