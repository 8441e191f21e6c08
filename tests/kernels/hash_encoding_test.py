"""Hash encoding: the reference against tcnn's rules, the kernel against both.

The reference is checked independently (a scalar Python transcription of
tiny-cuda-nn's ``grid_index``/``kernel_grid``, exact trilinear reproduction of a
linear function on a dense level, uint32 hashing against Python integers); the
kernel runs against the reference on fresh random inputs, values and gradients
wrt the table and the points, in every implementation x mode of
``tests/kernels/kernel_base.py`` (interpreted on CPU, compiled under the
``gpu`` marker).
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jaxsuite.kernels.hash_encoding import (
    HashEncodingConfig,
    default_implementation,
    hash_encode,
    hash_encode_pallas,
    hash_encode_reference,
    init_table,
)
from jaxsuite.kernels.hash_encoding import pallas as hp
from jaxsuite.kernels.hash_encoding import reference as ref

from tests.kernels import kernel_base

PRIMES = (1, 2654435761, 805459861)
IMPLEMENTATIONS = ("reference", "pallas")


def _tcnn_loop(points: np.ndarray, table: np.ndarray, scales, t: int) -> np.ndarray:
    """Scalar transcription of tcnn's kernel_grid (linear, 3-D) in Python ints."""
    num_levels, _, num_features = table.shape
    out = np.zeros((len(points), num_levels * num_features))
    for n, p in enumerate(points):
        for level, scale in enumerate(scales):
            res = math.ceil(scale) + 1
            params = -(-(res**3) // 8) * 8
            hashmap_size = min(params, t)
            pos = [float(p[d]) * scale + 0.5 for d in range(3)]
            grid = [math.floor(v) for v in pos]
            frac = [v - g for v, g in zip(pos, grid)]
            for corner in range(8):
                weight, local = 1.0, []
                for dim in range(3):
                    if corner & (1 << dim) == 0:
                        weight *= 1 - frac[dim]
                        local.append(grid[dim])
                    else:
                        weight *= frac[dim]
                        local.append(grid[dim] + 1)
                stride, index = 1, 0
                for dim in range(3):
                    if stride > hashmap_size:
                        break
                    index = (index + local[dim] * stride) % 2**32
                    stride *= res
                if hashmap_size < stride:
                    index = 0
                    for dim in range(3):
                        index ^= (local[dim] * PRIMES[dim]) % 2**32
                row = index % hashmap_size
                cols = slice(level * num_features, (level + 1) * num_features)
                out[n, cols] += weight * table[level, row]
    return out


def _points(key, n: int) -> jax.Array:
    """n random points plus the cube's corners and points on its faces."""
    k1, k2, k3 = jax.random.split(key, 3)
    rand = jax.random.uniform(k1, (n, 3))
    corners = jnp.asarray(
        [[(k >> d) & 1 for d in range(3)] for k in range(8)], jnp.float32
    )
    faces = jax.random.uniform(k2, (12, 3))
    which = jax.random.randint(k3, (12,), 0, 3)
    face_value = (jnp.arange(12) % 2).astype(jnp.float32)
    faces = jnp.where(
        jnp.arange(3)[None, :] == which[:, None], face_value[:, None], faces
    )
    return jnp.concatenate([rand, corners, faces])


def _close(got, want, rtol=1e-5):
    want = np.asarray(want)
    atol = rtol * max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(np.asarray(got), want, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- reference


def test_level_parameters_match_tcnn_formulas():
    cfg = HashEncodingConfig()  # tcnn defaults: 16 levels, b=2, N_min=16, T=2^19
    lp = cfg.levels()
    assert lp.resolution == tuple(16 * 2**level for level in range(16))
    assert lp.scale[:3] == (15.0, 31.0, 63.0)
    assert lp.dense == (True, True, True) + (False,) * 13
    assert lp.size[:4] == (16**3, 32**3, 64**3, 2**19)
    assert set(lp.size[3:]) == {2**19}
    ngp = HashEncodingConfig(max_resolution=2048)
    assert ngp.growth_factor == pytest.approx(math.exp(math.log(128) / 15), rel=1e-7)
    # size rounds res^3 up to a multiple of 8 but never past T.
    small = HashEncodingConfig(num_levels=1, table_size=30, base_resolution=3)
    assert small.levels() == ((2.0,), (3,), (30,), (True,))
    big = HashEncodingConfig(num_levels=1, table_size=100, base_resolution=3)
    assert big.levels() == ((2.0,), (3,), (32,), (True,))


def test_uint32_hash_wraps_like_python_ints():
    rng = np.random.default_rng(0)
    corner = rng.integers(0, 2**32, size=(64, 3), dtype=np.uint64)
    corner[:8] = rng.integers(0, 2**20, size=(8, 3))
    want = [
        ((int(a) * PRIMES[0]) ^ (int(b) * PRIMES[1]) ^ (int(c) * PRIMES[2])) % 2**32
        for a, b, c in corner
    ]
    got = ref.fast_hash(jnp.asarray(corner.astype(np.uint32)))
    np.testing.assert_array_equal(np.asarray(got, np.uint64), np.asarray(want))
    rows = ref.grid_index(jnp.asarray(corner.astype(np.uint32)), 1000, 777, False)
    np.testing.assert_array_equal(np.asarray(rows), np.asarray(want) % 777)


@pytest.mark.parametrize(
    "cfg",
    [
        # levels res 2, 4, 8 dense (res^3 <= T), res 16 hashed; T not a power of 2.
        HashEncodingConfig(
            4, 2, table_size=1000, base_resolution=2, per_level_scale=2.0
        ),
        # res^3 == T is still dense; index wraps mod 32 (res 3) and mod 30.
        HashEncodingConfig(3, 1, table_size=64, base_resolution=3, per_level_scale=1.5),
        HashEncodingConfig(1, 3, table_size=30, base_resolution=3),
    ],
)
def test_reference_matches_scalar_tcnn_transcription(cfg):
    x = _points(jax.random.key(1), 24)
    table = jax.random.normal(
        jax.random.key(2), (cfg.num_levels, cfg.hashmap_size, cfg.features_per_level)
    )
    want = _tcnn_loop(
        np.asarray(x), np.asarray(table), cfg.levels().scale, cfg.hashmap_size
    )
    got = jax.jit(hash_encode_reference, static_argnums=2)(x, table, cfg)
    _close(got, want)


def test_exact_scales_for_power_of_two_growth():
    cfg = HashEncodingConfig(
        4, 2, table_size=1000, base_resolution=2, per_level_scale=2.0
    )
    assert cfg.levels().scale == (1.0, 3.0, 7.0, 15.0)


def test_dense_level_reproduces_linear_function():
    # Level 1: scale = 4 * 1.6 - 1 = 5.4, res 7; frac(scale) < 0.5 keeps every
    # corner of every x in [0, 1] inside the 7^3 grid, so no index wraps.
    cfg = HashEncodingConfig(
        2, 2, table_size=512, base_resolution=4, per_level_scale=1.6
    )
    lp = cfg.levels()
    assert lp.resolution[1] == 7 and lp.dense[1]
    assert lp.scale[1] == pytest.approx(5.4, abs=1e-5)
    slope = np.array([[0.3, -1.2, 0.7], [2.0, 0.5, -0.25]])  # (F, 3)
    offset = np.array([0.1, -0.4])
    ijk = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    table = np.zeros((2, 512, 2), np.float32)
    rows = ijk[:, 0] + 7 * ijk[:, 1] + 49 * ijk[:, 2]
    table[1, rows] = ijk @ slope.T + offset
    x = _points(jax.random.key(3), 64)
    got = jax.jit(hash_encode_reference, static_argnums=2)(x, jnp.asarray(table), cfg)
    pos = np.asarray(x, np.float64) * lp.scale[1] + 0.5
    np.testing.assert_allclose(
        np.asarray(got)[:, 2:], pos @ slope.T + offset, atol=2e-5
    )


def test_reference_x_gradient_is_scaled_slope():
    # The same linear table: d(feature f)/dx = scale * slope_f, everywhere.
    cfg = HashEncodingConfig(1, 1, table_size=512, base_resolution=7)  # scale 6
    slope = np.array([0.3, -1.2, 0.7])
    ijk = np.stack(np.meshgrid(*[np.arange(7)] * 3, indexing="ij"), -1).reshape(-1, 3)
    table = np.zeros((1, 512, 1), np.float32)
    table[0, ijk[:, 0] + 7 * ijk[:, 1] + 49 * ijk[:, 2], 0] = ijk @ slope
    x = jax.random.uniform(jax.random.key(4), (16, 3), maxval=0.9)  # no wrap
    f = lambda x: hash_encode_reference(x, jnp.asarray(table), cfg).sum()
    dx = jax.jit(jax.grad(f))(x)
    np.testing.assert_allclose(
        np.asarray(dx), np.broadcast_to(6 * slope, (16, 3)), atol=1e-4
    )


# ---------------------------------------------------------------- kernel


KERNEL_CONFIGS = {
    "mixed_T_not_pow2": HashEncodingConfig(
        4, 2, table_size=1000, base_resolution=2, per_level_scale=2.0
    ),
    "dense_only": HashEncodingConfig(
        3, 2, log2_table_size=12, base_resolution=2, per_level_scale=1.5
    ),
    "hash_only_F4": HashEncodingConfig(
        2, 4, log2_table_size=8, base_resolution=8, max_resolution=32
    ),
}


@pytest.mark.parametrize("implementation, mode", kernel_base.cases(IMPLEMENTATIONS))
@pytest.mark.parametrize(
    "name, deterministic",
    [
        ("mixed_T_not_pow2", True),
        ("mixed_T_not_pow2", False),
        ("dense_only", True),
        ("hash_only_F4", False),
    ],
)
def test_hash_encode_matches_reference(name, deterministic, implementation, mode):
    """Values and gradients wrt points and table against the CPU reference."""
    cfg = KERNEL_CONFIGS[name]
    if name == "dense_only":
        assert all(cfg.levels().dense)
    if name == "hash_only_F4":
        assert not any(cfg.levels().dense)
    seed = sum(map(ord, name)) + deterministic
    kx, kt = jax.random.split(jax.random.key(seed))
    x = _points(kx, 100)  # 120 points: not a multiple of the block
    shape = (cfg.num_levels, cfg.hashmap_size, cfg.features_per_level)
    table = jax.random.normal(kt, shape)

    def fn(x, table, *, implementation, interpret):
        return hash_encode(
            x,
            table,
            config=cfg,
            implementation=implementation,
            interpret=interpret,
            deterministic=deterministic,
            block_size=32,
        )

    kernel_base.check_against_reference(
        fn,
        (x, table),
        (0, 1),
        implementation,
        mode,
        rtol=1e-5,
        names=("features", "d x", "d table"),
        cache_key=("hash_encoding", name, deterministic),
    )


def _pallas_vjp(cfg, x, table, ct, **kwargs) -> list[np.ndarray]:
    """``[features, d x, d table]`` of the interpreted kernel, one VJP with ``ct``."""

    def vjp(x, table):
        encode = lambda a, b: hash_encode_pallas(a, b, cfg, interpret=True, **kwargs)
        out, pull = jax.vjp(encode, x, table)
        return [out, *pull(ct)]

    return [np.asarray(a) for a in jax.jit(vjp)(x, table)]


def _random_case(cfg, seed: int, n: int = 100):
    kx, kt, kc = jax.random.split(jax.random.key(seed), 3)
    x = _points(kx, n)
    shape = (cfg.num_levels, cfg.hashmap_size, cfg.features_per_level)
    table = jax.random.normal(kt, shape)
    ct = jax.random.normal(kc, (x.shape[0], cfg.output_dim))
    return x, table, ct


@pytest.mark.parametrize(
    "levels_per_program, deterministic", [(2, True), (2, False), (4, True)]
)
def test_levels_per_program_matches_one_level(levels_per_program, deterministic):
    """P levels per program: features bitwise equal to P = 1, gradients close."""
    cfg = KERNEL_CONFIGS["mixed_T_not_pow2"]  # 4 levels: 3 dense, 1 hashed
    x, table, ct = _random_case(cfg, 10 * levels_per_program + deterministic)
    kw = dict(block_size=32, deterministic=deterministic)
    want = _pallas_vjp(cfg, x, table, ct, levels_per_program=1, **kw)
    got = _pallas_vjp(cfg, x, table, ct, levels_per_program=levels_per_program, **kw)
    np.testing.assert_array_equal(got[0], want[0])
    for g, w in zip(got[1:], want[1:]):
        _close(g, w)
    truth = jax.jit(hash_encode_reference, static_argnums=2)(x, table, cfg)
    _close(got[0], truth)


def test_levels_per_program_matches_reference_through_api():
    cfg = KERNEL_CONFIGS["hash_only_F4"]  # 2 levels, F = 4

    def fn(x, table, *, implementation, interpret):
        return hash_encode(
            x,
            table,
            config=cfg,
            implementation=implementation,
            interpret=interpret,
            deterministic=True,
            block_size=32,
            num_warps=2,
            levels_per_program=2,
        )

    x, table, _ = _random_case(cfg, 7)
    kernel_base.check_against_reference(
        fn,
        (x, table),
        (0, 1),
        "pallas",
        "interpret",
        rtol=1e-5,
        names=("features", "d x", "d table"),
    )


def test_levels_per_program_must_divide_levels():
    cfg = KERNEL_CONFIGS["mixed_T_not_pow2"]
    x, table, _ = _random_case(cfg, 8, n=4)
    for bad in (0, 3, 8):
        with pytest.raises(ValueError, match="levels_per_program"):
            hash_encode_pallas(x, table, cfg, interpret=True, levels_per_program=bad)


@pytest.mark.parametrize("backward", ["split_sort", "split_atomic"])
@pytest.mark.parametrize("name", ["mixed_T_not_pow2", "dense_only", "hash_only_F4"])
def test_split_backward_matches_reference(name, backward):
    """Values and both gradients of the split table-gradient variants."""
    cfg = KERNEL_CONFIGS[name]
    x, table, _ = _random_case(cfg, 40 + sum(map(ord, name)))

    def fn(x, table, *, implementation, interpret):
        return hash_encode(
            x,
            table,
            config=cfg,
            implementation=implementation,
            interpret=interpret,
            backward=backward,
            block_size=32,
        )

    kernel_base.check_against_reference(
        fn,
        (x, table),
        (0, 1),
        "pallas",
        "interpret",
        rtol=1e-5,
        names=("features", "d x", "d table"),
        cache_key=("hash_encoding_split", name),
    )


def test_split_sort_is_bitwise_reproducible():
    cfg = KERNEL_CONFIGS["mixed_T_not_pow2"]
    x, table, ct = _random_case(cfg, 50)
    first = _pallas_vjp(cfg, x, table, ct, backward="split_sort", block_size=32)
    second = _pallas_vjp(cfg, x, table, ct, backward="split_sort", block_size=32)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def _corner_outputs(cfg, x, table, ct, block=32):
    """Corner-kernel rows and weights and the padded cotangent, all levels."""
    opts = hp.PallasOptions(block_size=block, interpret=True)
    xt, g = hp.pad_points(x, block), hp.pad_cotangent(ct, block)
    _, rows, weights = jax.jit(hp.corner_kernel, static_argnums=(3, 4))(
        xt, table, g, cfg, opts
    )
    return rows, weights, g


def test_dense_stages_match_sort_path():
    """One sort of base-corner keys + 8 corner scatters = the full sort path."""
    cfg = KERNEL_CONFIGS["dense_only"]
    lp, t = cfg.levels(), cfg.hashmap_size
    x, table, ct = _random_case(cfg, 60)
    rows, weights, g = _corner_outputs(cfg, x, table, ct)
    assert bool(hp.dense_regular(rows, lp.resolution, lp.size))
    keys = hp.dense_keys(rows, t)
    values = hp.dense_contributions(weights, g)
    assert keys.shape == (rows.shape[0] * rows.shape[2],)
    assert values.shape == (keys.shape[0], 8 * cfg.features_per_level)
    sorted_keys, sorted_values = hp.sort_pairs(keys, values)
    assert bool(jnp.all(sorted_keys[1:] >= sorted_keys[:-1]))
    sums, last = hp.segmented_scan(sorted_keys, sorted_values)
    got = hp.scatter_dense_corners(sorted_keys, last, sums, t, lp.resolution, lp.size)
    want = hp.sorted_segment_sum(
        *hp.table_contributions(rows, weights, g, t), cfg.num_levels * t
    )
    _close(got, want)
    add_at = np.zeros((cfg.num_levels * t, cfg.features_per_level))
    k, v = hp.table_contributions(rows, weights, g, t)
    np.add.at(add_at, np.asarray(k), np.asarray(v))
    _close(got, add_at)


def test_dense_path_falls_back_outside_unit_cube():
    # res 6 and 9, P = 216 and 736 (not powers of 2). A point just below the
    # cube has base index -1 or -2: adding a corner offset wraps uint32, so
    # row_k != (row_0 + o_k) mod P and the sort path must take the level.
    cfg = HashEncodingConfig(
        2, 2, table_size=4096, base_resolution=6, per_level_scale=1.5
    )
    lp = cfg.levels()
    assert lp.dense == (True, True) and lp.size == (216, 736)
    x, table, ct = _random_case(cfg, 70, n=40)
    rows, *_ = _corner_outputs(cfg, x, table, ct)
    assert bool(hp.dense_regular(rows, lp.resolution, lp.size))
    outside = x.at[:4].set(jnp.asarray([[-0.2, 0.0, 0.0]] * 4))
    rows, *_ = _corner_outputs(cfg, outside, table, ct)
    assert not bool(hp.dense_regular(rows, lp.resolution, lp.size))
    got = _pallas_vjp(cfg, outside, table, ct, backward="split_sort", block_size=32)

    def vjp(x, table):
        out, pull = jax.vjp(lambda a, b: hash_encode_reference(a, b, cfg), x, table)
        return [out, *pull(ct)]

    want = jax.jit(vjp)(outside, table)
    for a, b in zip(got, want):
        _close(a, b)


def test_level_runs_and_backward_validation():
    cfg = KERNEL_CONFIGS["mixed_T_not_pow2"]
    assert hp.level_runs(cfg, "sort") == ((0, 4, "sort"),)
    assert hp.level_runs(cfg, "split_atomic") == ((0, 3, "dense"), (3, 4, "atomic"))
    assert hp.level_runs(KERNEL_CONFIGS["hash_only_F4"], "split_sort") == (
        (0, 2, "sort"),
    )
    x, table, _ = _random_case(cfg, 9, n=4)
    with pytest.raises(ValueError, match="backward"):
        hash_encode_pallas(x, table, cfg, interpret=True, backward="scatter")


def test_sorted_segment_sum_matches_add_at():
    rng = np.random.default_rng(5)
    keys = rng.integers(0, 50, size=300).astype(np.int32)
    vals = rng.normal(size=(300, 2)).astype(np.float32)
    want = np.zeros((60, 2))
    np.add.at(want, keys, vals)
    got = jax.jit(hp.sorted_segment_sum, static_argnums=2)(keys, vals, 60)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


def test_api_defaults_and_validation():
    assert default_implementation() == "reference"  # tests run on CPU
    cfg = KERNEL_CONFIGS["mixed_T_not_pow2"]
    table = init_table(jax.random.key(6), cfg)
    assert table.shape == (4, 1000, 2)
    assert float(jnp.abs(table).max()) <= 1e-4
    x = jax.random.uniform(jax.random.key(7), (40, 3))
    a = hash_encode(x, table, config=cfg)
    b = hash_encode(x, table, config=cfg, implementation="pallas", block_size=16)
    _close(b, a)
    with pytest.raises(ValueError):
        hash_encode(x, table[:, :10], config=cfg)
    with pytest.raises(ValueError):
        hash_encode(x, table, config=cfg, implementation="cuda")


@pytest.mark.parametrize("levels_per_program", [1, 2])
@pytest.mark.parametrize(
    "backward, calls",
    [("sort", 2), ("atomic", 2), ("split_sort", 3), ("split_atomic", 3)],
)
def test_pallas_lowers_to_triton_for_cuda(backward, calls, levels_per_program):
    # Lowering for a CUDA target runs here without a GPU: it checks that every
    # op in both kernels has a Triton lowering (Triton IR is compiled on the GPU).
    # The split variants launch the backward kernel once per run of levels
    # (3 dense levels, then 1 hashed).
    from jax import export

    cfg = KERNEL_CONFIGS["mixed_T_not_pow2"]
    x = jax.ShapeDtypeStruct((100, 3), jnp.float32)
    table = jax.ShapeDtypeStruct((4, 1000, 2), jnp.float32)
    ct = jax.ShapeDtypeStruct((100, 8), jnp.float32)

    def fwd_bwd(x, table, ct):
        encode = lambda a, b: hash_encode_pallas(
            a,
            b,
            cfg,
            interpret=False,
            backward=backward,
            levels_per_program=levels_per_program,
        )
        out, pull = jax.vjp(encode, x, table)
        return out, *pull(ct)

    triton = "__gpu$xla.gpu.triton"
    exported = export.export(
        jax.jit(fwd_bwd),
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(triton)],
    )(x, table, ct)
    assert exported.mlir_module().count(f"@{triton}") == calls
