"""The all_to_all communication layer and the per-device serve step vs numpy."""

import jax
import numpy as np

from jaxsuite.core import devices
from jaxsuite.gnn import exchange

N_DEV, S, W, D, U = 8, 4, 2, 8, 40
IDS = 256


def _random_cache(rng, set_div):
    """Per-device tags consistent with the set mapping, and random rows."""
    tags = np.full((N_DEV, S, W), -1, np.int32)
    for c in range(N_DEV):
        for s in range(S):
            ids = np.arange(IDS)
            own = ids % N_DEV == c if set_div == N_DEV else np.ones(IDS, bool)
            cand = ids[own & ((ids // set_div) % S == s)]
            k = rng.integers(0, W + 1)
            tags[c, s, :k] = rng.choice(cand, k, replace=False)
    rows = rng.standard_normal((N_DEV, S, W, D)).astype(np.float32)
    return rows, tags


def _serve_ref(
    rows, tags, req, fill_idx, fill_rows, stage_ids, stage_rows, ins, ev, set_div
):
    """Numpy reference of one device's serve()."""
    rows, tags = rows.copy(), tags.copy()
    out = np.zeros((req.size, D), np.float32)
    hit = np.zeros(req.size, bool)
    vhit = np.zeros(req.size, bool)
    sets = np.zeros(req.size, np.int64)
    for i, v in enumerate(req):
        if v < 0:
            continue
        s = (v // set_div) % S
        sets[i] = s
        w = np.flatnonzero(tags[s] == v)
        if w.size:
            hit[i], out[i] = True, rows[s, w[0]]
        elif v in stage_ids:
            vhit[i], out[i] = True, stage_rows[np.flatnonzero(stage_ids == v)[0]]
        else:
            out[i] = fill_rows[fill_idx[i]]
    evicted = np.stack([rows[max(s, 0), max(w, 0)] for s, w in zip(*ev)])
    for i, v in enumerate(req):
        if v >= 0 and ins[i] >= 0:
            rows[sets[i], ins[i]] = out[i]
            tags[sets[i], ins[i]] = v
    return out, rows, tags, evicted, hit, vhit


def _plan_inputs(rng, tags, req_owner_layout, set_div):
    """Random fills, staging, insertions and evictions for each owner."""
    n_req = req_owner_layout.shape[1]
    fill_idx = np.full((N_DEV, n_req), -1, np.int32)
    ins = np.full((N_DEV, n_req), -1, np.int32)
    fill_rows = rng.standard_normal((N_DEV, n_req, D)).astype(np.float32)
    stage_ids = np.full((N_DEV, 4), -1, np.int32)
    stage_rows = rng.standard_normal((N_DEV, 4, D)).astype(np.float32)
    for o in range(N_DEV):
        req = req_owner_layout[o]
        resident = np.isin(req, tags[o]) & (req >= 0)
        misses = np.unique(req[(req >= 0) & ~resident])
        staged = np.sort(misses[:2])
        stage_ids[o, 4 - staged.size :] = staged  # sorted, padding first
        fill_idx[o] = np.where((req >= 0) & ~resident, np.arange(n_req), -1)
        # At most one insertion per set and owner, into a random way.
        used = set()
        for i in np.flatnonzero((req >= 0) & ~resident):
            s = (req[i] // set_div) % S
            key = int(s)
            if key in used or rng.random() < 0.3:
                continue
            used.add(key)
            ins[o, np.flatnonzero(req == req[i])] = rng.integers(0, W)
    ev_set = rng.integers(0, S, (N_DEV, 3)).astype(np.int32)
    ev_way = rng.integers(0, W, (N_DEV, 3)).astype(np.int32)
    ev_way[:, 2] = -1
    return exchange.ServeInputs(
        fill_idx, fill_rows, stage_ids, stage_rows, ins, ev_set, ev_way
    )


def _check(got, rows, tags, req_layout, inp, set_div):
    feats, new_rows, new_tags, evicted, hit, vhit = map(np.asarray, got)
    outs = []
    for o in range(N_DEV):
        ref = _serve_ref(
            rows[o],
            tags[o],
            req_layout[o],
            inp.fill_idx[o],
            inp.fill_rows[o],
            inp.stage_ids[o],
            inp.stage_rows[o],
            inp.insert_way[o],
            (inp.evict_set[o], inp.evict_way[o]),
            set_div,
        )
        np.testing.assert_array_equal(new_rows[o], ref[1])
        np.testing.assert_array_equal(new_tags[o], ref[2])
        np.testing.assert_array_equal(evicted[o], ref[3])
        np.testing.assert_array_equal(hit[o], ref[4])
        np.testing.assert_array_equal(vhit[o], ref[5])
        outs.append(ref[0])
    return feats, np.stack(outs)


def test_shared_fetch_routes_rows_through_owners():
    rng = np.random.default_rng(0)
    mesh = devices.make_mesh((N_DEV,), ("dev",))
    rows, tags = _random_cache(rng, N_DEV)
    reqs = [rng.choice(IDS, rng.integers(5, U), replace=False) for _ in range(N_DEV)]
    cap = max(int(np.sum(r % N_DEV == o)) for r in reqs for o in range(N_DEV))
    out_req = np.full((N_DEV, N_DEV, cap), -1, np.int32)
    out_pos = np.full((N_DEV, N_DEV, cap), U, np.int32)
    for s, r in enumerate(reqs):
        for o in range(N_DEV):
            sel = np.flatnonzero(r % N_DEV == o)
            out_req[s, o, : sel.size] = r[sel]
            out_pos[s, o, : sel.size] = sel
    # What owner o receives: row s * cap + j is request j of source s.
    recv = out_req.transpose(1, 0, 2).reshape(N_DEV, N_DEV * cap)
    inp = _plan_inputs(rng, tags, recv, N_DEV)
    fetch = exchange.make_shared_fetch(mesh, "dev", U)
    sharding = jax.sharding.NamedSharding(mesh, jax.P("dev"))
    args = jax.device_put((rows, tags, out_req, out_pos, inp), sharding)
    feats, served = _check(fetch(*args), rows, tags, recv, inp, N_DEV)
    served = served.reshape(N_DEV, N_DEV, cap, D)  # [owner, source, j]
    for s, r in enumerate(reqs):
        want = np.zeros((U, D), np.float32)
        for o in range(N_DEV):
            sel = np.flatnonzero(r % N_DEV == o)
            want[sel] = served[o, s, : sel.size]
        np.testing.assert_array_equal(feats[s], want)
        assert np.abs(feats[s, : r.size]).sum(1).min() > 0


def test_independent_fetch_serves_locally():
    rng = np.random.default_rng(1)
    mesh = devices.make_mesh((N_DEV,), ("dev",))
    rows, tags = _random_cache(rng, 1)
    req = np.full((N_DEV, U), -1, np.int32)
    for d in range(N_DEV):
        k = rng.integers(5, U)
        pool = np.concatenate([tags[d][tags[d] >= 0], rng.choice(IDS, 30)])
        r = np.unique(pool)[:k]
        req[d, : r.size] = r
    inp = _plan_inputs(rng, tags, req, 1)
    fetch = exchange.make_independent_fetch(mesh, "dev")
    sharding = jax.sharding.NamedSharding(mesh, jax.P("dev"))
    args = jax.device_put((rows, tags, req, inp), sharding)
    feats, served = _check(fetch(*args), rows, tags, req, inp, 1)
    np.testing.assert_array_equal(feats, served)
    assert np.asarray(fetch(*args)[4]).any()
