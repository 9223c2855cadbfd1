"""The engine's compiled kernels (engine/kernels.py) compute what their numpy statements
(tests/oracles.py) compute."""

import numpy as np
import oracles
import pytest

from engine import kernels


def test_warm_up_compiles_every_kernel_once():
    kernels.warm_up()
    kernels.warm_up()  # (a no-op the second time)


def test_max_abs_is_the_largest_magnitude_and_reports_nan():
    rng = np.random.default_rng(5)
    values = rng.normal(size=(20, 8)) * 1e3
    assert kernels.max_abs(values) == oracles.max_abs(values) == np.abs(values).max()
    values[3, 4] = -np.inf
    assert kernels.max_abs(values) == np.inf
    values[19, 7] = np.nan  # after an infinity: still reported
    assert np.isnan(kernels.max_abs(values)) and np.isnan(oracles.max_abs(values))
    assert kernels.max_abs(np.zeros((0, 8))) == oracles.max_abs(np.zeros((0, 8))) == 0.0


@pytest.mark.parametrize("context", [(), ("hour", "mobile")])
@pytest.mark.parametrize("frozen", [False, True])
def test_fill_features_is_the_featurizers_layout(context, frozen):
    from engine.featurizer import Featurizer

    f = Featurizer(item_features=3, context_features=context)
    rng = np.random.default_rng(6)
    users = [rng.normal(size=4), rng.normal(size=4)]
    inters = [rng.normal(size=(5, 5)), rng.normal(size=(2, 5))]  # padded: a second row of 2
    items = [rng.normal(size=(5, 3)), rng.normal(size=(2, 3))]
    for item in items:
        item.flags.writeable = not frozen  # a recurring list's item features are read-only
    ctxs = [rng.normal(size=len(context)) for _ in range(2)]
    phi, mask = f.build(users, inters, items, ctxs)
    want = np.zeros_like(phi)
    for r in range(2):
        oracles.fill_features(want[r, :len(inters[r])], users[r], inters[r], items[r], ctxs[r])
    np.testing.assert_array_equal(phi, want)  # bit for bit, padding zeros included
    assert mask.tolist() == [[True] * 5, [True] * 2 + [False] * 3]
    assert phi.shape == (2, 5, f.n_features)


def test_topic_columns_sum_each_candidates_topics_in_order():
    from engine.shard import Candidate, CandidateSet, _topic_keys

    rng = np.random.default_rng(7)
    interests = {f"topic:t{j}": float(v) for j, v in enumerate(rng.normal(size=6))}
    exposure = {f"topic:t{j}": float(v) for j, v in enumerate(rng.random(4) * 3)}
    lists = [CandidateSet([Candidate(f"i{j}", [f"t{j % 7}"]) for j in range(9)]),
             CandidateSet([Candidate(f"i{j}", [f"t{t}" for t in range(j % 4)])
                           for j in range(9)])]  # none, one, two or three topics each
    for cands in lists:
        for expo in (exposure, {}):
            keys, starts = _topic_keys(cands)
            got, want = np.zeros((9, 5)), np.zeros((9, 5))
            kernels.topic_columns(
                np.array([interests.get(t, 0.0) for t in keys]),
                np.array([expo.get(t, 0.0) for t in keys]) if expo else np.empty(0),
                starts, 0.7, 3.5, 0.4, got)
            oracles.topic_columns(want, cands, interests, expo, 0.7, 3.5, 0.4)
            np.testing.assert_array_equal(got, want)
    assert want[:, 0].any()


def test_row_dots_are_the_rows_dot_products():
    rng = np.random.default_rng(8)
    matrix, vector = rng.normal(size=(30, 8)), rng.normal(size=8)
    rows = rng.integers(30, size=12)
    out = np.full((12, 3), 5.0)
    kernels.row_dots(matrix, rows, vector, out, 1)
    np.testing.assert_allclose(out[:, 1], matrix[rows] @ vector, rtol=1e-12, atol=1e-15)
    assert (out[:, [0, 2]] == 5.0).all()  # the other columns untouched


def test_funk_sgd_is_funk_sgd_one_event_by_event():
    rng = np.random.default_rng(9)
    users, items = rng.normal(size=(5, 4)), rng.normal(size=(6, 4))
    u_rows, i_rows = rng.integers(5, size=40), rng.integers(6, size=40)
    targets = rng.random(40)
    u1, i1 = users.copy(), items.copy()
    kernels.funk_sgd(users, items, u_rows, i_rows, targets, 0.05, 0.05, 0.01, 1.0)
    for u, i, y in zip(u_rows, i_rows, targets, strict=True):
        kernels.funk_sgd_one(u1, i1, u, i, y, 0.05, 0.05, 0.01, 1.0)
    assert np.array_equal(users, u1) and np.array_equal(items, i1)
