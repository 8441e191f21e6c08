"""The Marshall-Molteni (1993) three-level quasi-geostrophic model at T21.

Prognostic variable: potential vorticity ``q_i`` at 200, 500 and 800 hPa
(spectral, (..., 3, T+1, T+1) complex; see ``sphere``). With ``f = 2 Omega mu``
and the planetary PV ``q_p = f`` on levels 1-2 and ``f (1 + h / H0)`` on
level 3,

    q - q_p = (laplacian + C) psi,   C = -[[1/R1^2, -1/R1^2, 0],
                                           [-1/R1^2, 1/R1^2 + 1/R2^2, -1/R2^2],
                                           [0, -1/R2^2, 1/R2^2]]

is inverted per total wavenumber l (a 3 x 3 solve; at l = 0 only the lower
2 x 2 block, the level-1 mean streamfunction being 0), and

    dq/dt = -J(psi, q) - C psi / tau_R - div(k grad psi_3) [level 3 only]
            - (l (l+1) / (T (T+1)))^4 / tau_H (q - q_p) + S,

with the Ekman drag ``k = (1 + a_1 LSM + a_2 (1 - exp(-max(h, 0) / 1000 m))) / tau_E``
and the forcing ``S`` (constant in time; ``roads_forcing`` computes it from a
sample of states so that their mean is a stationary state). RK4 time steps
of ``dt`` seconds. The term conventions (selective dissipation on
``q - q_p``, Ekman drag in divergence form, l = 0 inversion) follow pyshqg
1.0.1, which the tests match to 1e-6 relative RMS.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxsuite.climate import sphere as sphere_lib

DAY = 86400.0
NUM_LEVELS = 3
LEVELS_HPA = (200, 500, 800)


@dataclasses.dataclass(frozen=True)
class QGConfig:
    """Physical parameters (defaults: pyshqg's and MM93's T21 set-up).

    Times are in seconds, lengths in metres.
    """

    T: int = 21
    nlat: int = 32
    nlon: int = 64
    omega: float = 7.292e-5
    rossby_radii: tuple[float, float] = (700.0e3, 450.0e3)
    orography_scale: float = 9000.0  # H0 in the planetary PV
    tau_ekman: float = 3.0 * DAY
    weight_land_sea_mask: float = 0.5
    weight_orography: float = 0.5
    ekman_orography_scale: float = 1000.0
    tau_selective: float = 8640.0
    tau_thermal: float = 25.0 * DAY
    dt: float = 1800.0

    @property
    def sphere(self) -> sphere_lib.Sphere:
        return sphere_lib.sphere(self.T, self.nlat, self.nlon)

    @property
    def steps_per_day(self) -> int:
        n = DAY / self.dt
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"dt={self.dt} s does not divide a day.")
        return int(round(n))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class QGModel:
    """Precomputed operators of one model configuration (a pytree).

    Attributes:
      q_planet: (3, L, L) spectral planetary PV ``f (1 + h/H0)``.
      inv_coupling: (L, 3, 3) per-degree inverse of ``laplacian + C``.
      selective: (L,) hyperdiffusion rate per degree (1/s).
      coupling: (3, 3) vertical coupling ``C`` (1/m^2).
      thermal: (3, 3) ``C / tau_R`` (1/s/m^2).
      drag: (nlat, nlon) Ekman drag rate ``k`` on the grid (1/s).
      drag_dx, drag_dy: (nlat, nlon) gradient of ``k``.
      forcing: (3, L, L) spectral forcing ``S``.
      sphere: the transform (static).
    """

    q_planet: jax.Array
    inv_coupling: jax.Array
    selective: jax.Array
    coupling: jax.Array
    thermal: jax.Array
    drag: jax.Array
    drag_dx: jax.Array
    drag_dy: jax.Array
    forcing: jax.Array
    sphere: sphere_lib.Sphere = dataclasses.field(metadata=dict(static=True))

    @property
    def dtype(self):
        return self.drag.dtype

    def astype(self, dtype: Any) -> QGModel:
        """The same model with real arrays in ``dtype`` (complex to match)."""
        cdt = jnp.complex128 if jnp.result_type(dtype) == jnp.float64 else jnp.complex64

        def cast(x):
            return x.astype(cdt if jnp.iscomplexobj(x) else dtype)

        return jax.tree.map(cast, self)

    def replace(self, **kw) -> QGModel:
        return dataclasses.replace(self, **kw)


def coupling_matrix(rossby_radii: tuple[float, ...]) -> np.ndarray:
    """(3, 3) vertical coupling ``C`` (1/m^2), negative semi-definite."""
    n = len(rossby_radii) + 1
    c = np.zeros((n, n))
    for z, r in enumerate(rossby_radii):
        c[z : z + 2, z : z + 2] -= np.array([[1.0, -1.0], [-1.0, 1.0]]) / r**2
    return c


def build_model(
    config: QGConfig,
    orography: np.ndarray,
    land_sea_mask: np.ndarray,
    forcing: np.ndarray | None = None,
    dtype: Any = jnp.float64,
) -> QGModel:
    """Precomputes a model's operators in float64 numpy, then casts.

    Args:
      config: physical parameters.
      orography: (nlat, nlon) surface height in m on the model grid.
      land_sea_mask: (nlat, nlon) land fraction in [0, 1].
      forcing: (3, nlat, nlon) grid forcing in 1/s^2, or None for zero.
      dtype: float64 needs ``jax.enable_x64``; float32 otherwise.

    Returns:
      The ``QGModel`` pytree.
    """
    sph = config.sphere
    with jax.enable_x64(True):
        f = 2.0 * config.omega * sph.mu[:, None] * np.ones((1, sph.nlon))
        qp = np.stack(
            [f, f, f * (1.0 + np.asarray(orography) / config.orography_scale)]
        )
        q_planet = np.asarray(sph.to_spec(jnp.asarray(qp)))
        c = coupling_matrix(config.rossby_radii)
        ev = sph.eigenvalues()
        inv = np.zeros((config.T + 1, NUM_LEVELS, NUM_LEVELS))
        inv[0, 1:, 1:] = np.linalg.inv(c[1:, 1:])
        for l in range(1, config.T + 1):  # noqa: E741 (l is the degree)
            inv[l] = np.linalg.inv(ev[l] * np.eye(NUM_LEVELS) + c)
        selective = (sph.l * (sph.l + 1.0) / (config.T * (config.T + 1.0))) ** 4
        selective = selective / config.tau_selective
        thermal = c / config.tau_thermal
        h = np.maximum(0.0, np.asarray(orography) / config.ekman_orography_scale)
        drag = (
            1.0
            + config.weight_land_sea_mask * np.asarray(land_sea_mask)
            + config.weight_orography * (1.0 - np.exp(-h))
        ) / config.tau_ekman
        dx, dy = sph.grad(sph.to_spec(jnp.asarray(drag)))
        if forcing is None:
            spec_forcing = np.zeros((NUM_LEVELS, *sph.spec_shape), np.complex128)
        else:
            spec_forcing = np.asarray(sph.to_spec(jnp.asarray(forcing, jnp.float64)))
        model = QGModel(
            q_planet=q_planet,
            inv_coupling=inv,
            selective=selective,
            coupling=c,
            thermal=thermal,
            drag=drag,
            drag_dx=np.asarray(dx),
            drag_dy=np.asarray(dy),
            forcing=spec_forcing,
            sphere=sph,
        )
    return _to_jax(model, dtype)


def _to_jax(model: QGModel, dtype: Any) -> QGModel:
    cdt = np.complex128 if np.dtype(dtype) == np.float64 else np.complex64

    def cast(x):
        x = np.asarray(x)
        return jnp.asarray(x.astype(cdt if np.iscomplexobj(x) else dtype))

    return jax.tree.map(cast, model)


def without_forcing_and_dissipation(model: QGModel) -> QGModel:
    """The inviscid, unforced model (only inversion and advection remain)."""
    zero = jax.tree.map(jnp.zeros_like, model)
    return model.replace(
        selective=zero.selective,
        thermal=zero.thermal,
        drag=zero.drag,
        drag_dx=zero.drag_dx,
        drag_dy=zero.drag_dy,
        forcing=zero.forcing,
    )


def _per_member(fn: Callable) -> Callable:
    """Lets ``fn(model, x)`` written for one (3, L, L) member take (..., 3, L, L)."""

    def wrapped(model, x, *args):
        f = lambda xx: fn(model, xx, *args)  # noqa: E731
        for _ in range(x.ndim - 3):
            f = jax.vmap(f)
        return f(x)

    wrapped.__doc__ = fn.__doc__
    wrapped.__name__ = fn.__name__
    return wrapped


@_per_member
def psi_from_q(model: QGModel, q: jax.Array) -> jax.Array:
    """PV inversion: (..., 3, L, L) q -> (..., 3, L, L) streamfunction (m^2/s)."""
    q_rel = q - model.q_planet
    re = jnp.einsum("lij,...jlm->...ilm", model.inv_coupling, q_rel.real)
    im = jnp.einsum("lij,...jlm->...ilm", model.inv_coupling, q_rel.imag)
    return jax.lax.complex(re, im)


@_per_member
def q_from_psi(model: QGModel, psi: jax.Array) -> jax.Array:
    """Inverse of ``psi_from_q``: ``q = (laplacian + C) psi + q_p``."""
    lap = model.sphere.laplacian(psi)
    re = jnp.einsum("ij,...jlm->...ilm", model.coupling, psi.real)
    im = jnp.einsum("ij,...jlm->...ilm", model.coupling, psi.imag)
    return lap + jax.lax.complex(re, im) + model.q_planet


@_per_member
def tendency(model: QGModel, q: jax.Array) -> jax.Array:
    """dq/dt for spectral PV q: (..., 3, L, L) -> (..., 3, L, L) in 1/s^2."""
    sph = model.sphere
    psi = psi_from_q(model, q)
    q_rel = q - model.q_planet
    # One synthesis call for all gradients: levels of q and psi stacked.
    gx, gy = sph.grad(jnp.concatenate([q, psi], axis=-3))
    qx, px = gx[..., :NUM_LEVELS, :, :], gx[..., NUM_LEVELS:, :, :]
    qy, py = gy[..., :NUM_LEVELS, :, :], gy[..., NUM_LEVELS:, :, :]
    jac = px * qy - py * qx  # J(psi, q)
    zeta3 = sph.to_grid(sph.laplacian(psi[..., -1, :, :]))
    ekman = model.drag * zeta3 + model.drag_dx * px[..., -1, :, :]
    ekman = ekman + model.drag_dy * py[..., -1, :, :]
    grid = -jac - jnp.stack(
        [jnp.zeros_like(ekman), jnp.zeros_like(ekman), ekman], axis=-3
    )
    spec = sph.to_spec(grid) + model.forcing
    selective = model.selective.astype(q.real.dtype).astype(q_rel.dtype)
    spec = spec - q_rel * selective[None, :, None]
    th_re = jnp.einsum("ij,...jlm->...ilm", model.thermal, psi.real)
    th_im = jnp.einsum("ij,...jlm->...ilm", model.thermal, psi.imag)
    return sph.truncate(spec - jax.lax.complex(th_re, th_im))


def rk4_step(model: QGModel, q: jax.Array, dt: float) -> jax.Array:
    """One classical Runge-Kutta step of ``dt`` seconds."""
    k1 = tendency(model, q)
    k2 = tendency(model, q + 0.5 * dt * k1)
    k3 = tendency(model, q + 0.5 * dt * k2)
    k4 = tendency(model, q + dt * k3)
    return q + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)


def integrate(
    model: QGModel,
    q0: jax.Array,
    *,
    num_saves: int,
    steps_per_save: int,
    dt: float,
    observe: Callable[[QGModel, jax.Array], Any] | None = None,
) -> tuple[jax.Array, Any]:
    """Integrates ``num_saves * steps_per_save`` RK4 steps with ``lax.scan``.

    Args:
      model: the model.
      q0: (..., 3, L, L) initial PV (leading axes integrate together).
      num_saves: number of outputs.
      steps_per_save: RK4 steps between outputs.
      dt: step in seconds.
      observe: ``observe(model, q) -> pytree`` recorded after each save
        interval (default: q itself).

    Returns:
      ``(q_final, observations)``; observations are stacked on a new leading
      axis of length ``num_saves``.
    """
    observe = observe or (lambda m, q: q)

    def inner(q, _):
        return rk4_step(model, q, dt), None

    def outer(q, _):
        q, _ = jax.lax.scan(inner, q, None, length=steps_per_save)
        return q, observe(model, q)

    return jax.lax.scan(outer, q0, None, length=num_saves)


def roads_forcing(model: QGModel, q_samples: jax.Array) -> jax.Array:
    """Forcing that makes the mean tendency over ``q_samples`` vanish (Roads 1987).

    ``S = -mean_n F(q_n)`` with ``F`` the unforced tendency: the observed
    time mean of ``dq/dt`` is then zero, i.e. the sampled climate (mean plus
    transient-eddy fluxes) is a stationary state of the forced model.

    Args:
      model: the model (its own forcing is ignored).
      q_samples: (N, 3, L, L) spectral PV states of the climatology.

    Returns:
      (3, L, L) spectral forcing for ``model.replace(forcing=...)``.
    """
    unforced = model.replace(forcing=jnp.zeros_like(model.forcing))
    tend = jax.lax.map(lambda q: tendency(unforced, q), q_samples, batch_size=64)
    return -jnp.mean(tend, axis=0)


@_per_member
def energy(model: QGModel, q: jax.Array) -> jax.Array:
    """Total (kinetic + available potential) energy per unit mass, (...,) m^2/s^2.

    ``E = -1/2 sum_i mean(psi_i (q_i - q_p,i))``, conserved by the inviscid
    unforced dynamics.
    """
    psi = psi_from_q(model, q)
    return -0.5 * jnp.sum(model.sphere.mean_product(psi, q - model.q_planet))


@_per_member
def enstrophy(model: QGModel, q: jax.Array) -> jax.Array:
    """Potential enstrophy ``1/2 sum_i mean(q_i^2)``, (...,) 1/s^2."""
    return 0.5 * jnp.sum(model.sphere.mean_product(q, q))


def shard_ensemble(
    fn: Callable[[jax.Array], Any], mesh: jax.sharding.Mesh, axis: str = "members"
) -> Callable[[jax.Array], Any]:
    """Runs ``fn`` (a function of a batch of members) with members split over ``mesh``.

    Args:
      fn: maps (B, ...) member arrays to a pytree with leading axis B.
      mesh: a mesh with an axis named ``axis``.
      axis: the mesh axis that members are split over.

    Returns:
      The ``shard_map``-ed, jitted function; the member count must be a
      multiple of the axis size.
    """
    spec = jax.P(axis)
    mapped = jax.jit(jax.shard_map(fn, mesh=mesh, in_specs=spec, out_specs=spec))
    sharding = jax.sharding.NamedSharding(mesh, spec)

    def run(x: jax.Array) -> Any:
        return mapped(jax.device_put(x, sharding))

    return run
