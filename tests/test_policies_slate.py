"""Slates: distinct slots, the law of sequential sampling without replacement, exact
per-slot propensities, and the VW adapter's text path."""

from __future__ import annotations

import numpy as np
import pytest

from policies import make, sample_slate
from policies.vw import action_template


def test_slots_follow_sequential_sampling_without_replacement():
    rng = np.random.default_rng(0)
    probs = np.array([[0.5, 0.3, 0.2, 0.0]] * 40_000)
    slots, sp = sample_slate(probs, 2, rng)
    assert slots.dtype == np.int64 and sp.dtype == np.float64 and slots.shape == (40_000, 2)
    assert (slots[:, 0] != slots[:, 1]).all() and (slots != 3).all()
    first = np.bincount(slots[:, 0], minlength=4) / len(slots)
    np.testing.assert_allclose(first, [0.5, 0.3, 0.2, 0.0], atol=0.01)
    np.testing.assert_allclose(sp[:, 0], probs[0, slots[:, 0]])
    # P(slot 1 = 1 | slot 0 = 0) = 0.3 / 0.5, and the frequencies agree
    sel = slots[:, 0] == 0
    np.testing.assert_allclose(sp[sel & (slots[:, 1] == 1), 1], 0.6)
    assert abs((slots[sel, 1] == 1).mean() - 0.6) < 0.015
    # the product of slot propensities is the probability of the ordered slate
    pairs, counts = np.unique(slots, axis=0, return_counts=True)
    for pair, count in zip(pairs, counts, strict=True):
        exact = probs[0, pair[0]] * probs[0, pair[1]] / (1 - probs[0, pair[0]])
        assert abs(count / len(slots) - exact) < 0.01
        got = sp[(slots == pair).all(axis=1)].prod(axis=1)
        np.testing.assert_allclose(got, exact)


def test_full_slate_and_same_seed_same_slate():
    probs = np.array([[0.1, 0.2, 0.3, 0.4], [0.25] * 4])
    a = sample_slate(probs, 4, np.random.default_rng(5))
    b = sample_slate(probs, 4, np.random.default_rng(5))
    np.testing.assert_array_equal(a[0], b[0])
    assert (np.sort(a[0], axis=1) == np.arange(4)).all()
    np.testing.assert_allclose(a[1][:, -1], 1.0)


def test_slates_from_a_policy_with_masks():
    p = make("lints", n_features=3, seed=0)
    rng = np.random.default_rng(1)
    mask = np.array([[True, False, True, True], [False, True, True, False]])
    probs = p.act(rng.normal(size=(2, 4, 3)), mask)
    slots, sp = sample_slate(probs, 2, rng)
    assert mask[np.arange(2)[:, None], slots].all()
    assert ((sp > 0) & (sp <= 1)).all()


@pytest.mark.parametrize(("args", "exc", "message"), [
    ((np.ones(3) / 3, 1), ValueError, r"^probs: must have shape \(B, K\)"),
    ((np.array([[0.5, -0.5, 1.0]]), 1), ValueError, "^probs: must be finite and >= 0"),
    ((np.array([["a", "b"]]), 1), TypeError, "^probs: must be a numeric array"),
    ((np.array([[0.5, 0.5]]), 0), ValueError, r"^slate_size: must be an integer >= 1 \(got 0\)"),
    ((np.array([[0.5, 0.5]]), 1.0), ValueError, "^slate_size: must be an integer"),
    ((np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]), 3), ValueError,
     "^slate_size: 3 exceeds the 2 candidates with non-zero probability in row 0"),
])
def test_bad_slate_arguments(args, exc, message):
    with pytest.raises(exc, match=message):
        sample_slate(*args, np.random.default_rng(0))


def test_slate_needs_a_generator():
    with pytest.raises(TypeError, match="^rng: must be a numpy Generator"):
        sample_slate(np.array([[0.5, 0.5]]), 1, 0)


def test_vw_lines_and_masked_candidates():
    assert action_template(2) % (1.5, -0.25) == "|f 0:1.5 1:-0.25"
    p = make("vw:epsilon", n_features=2, seed=0, epsilon=0.3)
    phi = np.array([[[1.0, 0.0], [5.0, 5.0], [0.0, 1.0]]])
    probs = p.act(phi, np.array([[True, False, True]]))
    assert probs[0, 1] == 0.0 and probs[0, [0, 2]].round(6).tolist() == [0.5, 0.5]
    # the shown set is remembered and consumed when the chosen candidate is learned
    assert len(p._recent) == 2
    p.update(phi[0, :1].astype(np.float32), [0.0], probs[0, :1])  # cost 1 for candidate 0
    assert len(p._recent) == 1
    after = p.act(phi, np.array([[True, False, True]]))
    np.testing.assert_allclose(after[0, [0, 2]], [0.15, 0.85], atol=1e-6)
