"""LatentFactors is River's FunkMF: same latents, bit for bit, with a leaner learn_one."""

import pickle

import numpy as np
import oracles
import pytest
from river import optim, reco

from engine.events import EventTypes, validate_event
from engine.latent import LatentFactors
from engine.profile import ProfileConfig
from engine.shard import ProfileShard


def stream(n=3000, seed=0):
    rng = np.random.default_rng(seed)
    users = rng.integers(60, size=n)
    items = rng.integers(90, size=n)
    targets = rng.choice([1.0, 0.0, -1.0, 0.5, 3.0], size=n)
    return [(f"u{u}", f"i{i}", float(y)) for u, i, y in zip(users, items, targets, strict=True)]


def same(a, b) -> bool:
    return (a.u_latents.keys() == b.u_latents.keys() and a.i_latents.keys() == b.i_latents.keys()
            and all(np.array_equal(a.u_latents[k], b.u_latents[k]) for k in a.u_latents)
            and all(np.array_equal(a.i_latents[k], b.i_latents[k]) for k in a.i_latents))


@pytest.mark.parametrize("kwargs", [
    {"n_factors": 8, "optimizer": optim.SGD(0.05), "l2": 0.001, "seed": 3},
    {"n_factors": 5, "optimizer": optim.SGD(0.2), "l2": 0.0, "clip_gradient": 0.5, "seed": 1},
])
def test_bit_for_bit_rivers_funkmf(kwargs):
    ours, river = LatentFactors(**kwargs), reco.FunkMF(**kwargs)
    for user, item, y in stream():
        ours.learn_one(user, item, y)
        river.learn_one(user, item, y)
    assert same(ours, river)
    assert ours.u_optimizer.n_iterations == river.u_optimizer.n_iterations == 3000
    assert ours.i_optimizer.n_iterations == river.i_optimizer.n_iterations == 3000
    assert ours.predict_one("u3", "i7") == river.predict_one("u3", "i7")
    # and it learned: latents moved away from the initializer's draws
    fresh = LatentFactors(**kwargs)
    assert not np.array_equal(ours.u_latents["u3"], fresh.u_latents["u3"])


def test_other_optimizers_run_rivers_update():
    kwargs = {"n_factors": 4, "optimizer": optim.Adam(0.01), "loss": optim.losses.Absolute(),
              "seed": 2}
    ours, river = LatentFactors(**kwargs), reco.FunkMF(**kwargs)
    for user, item, y in stream(500):
        ours.learn_one(user, item, y)
        river.learn_one(user, item, y)
    assert same(ours, river)


def test_shard_restores_a_snapshot_holding_rivers_class():
    shard = ProfileShard(0, ProfileConfig(), EventTypes())
    ev = validate_event({"user_id": "u1", "type": "click", "ts": 1.0, "item_id": "i1"})
    shard.apply([ev], [1])
    state = dict(shard.__dict__)
    old = reco.FunkMF(n_factors=8, optimizer=optim.SGD(0.05), l2=0.001, seed=0)
    old.u_latents.update(shard._mf.u_latents)
    old.i_latents.update(shard._mf.i_latents)
    state["_mf"] = old
    back = ProfileShard(0, ProfileConfig(), EventTypes()).restore(pickle.dumps(state))
    assert type(back._mf) is LatentFactors
    assert np.array_equal(back._mf.u_latents["u1"], shard._mf.u_latents["u1"])


@pytest.mark.parametrize("kwargs", [
    {"n_factors": 8, "optimizer": optim.SGD(0.05), "l2": 0.001, "seed": 3},
    {"n_factors": 5, "optimizer": optim.SGD(0.2), "l2": 0.0, "clip_gradient": 0.5, "seed": 1},
])
def test_learn_many_is_bit_for_bit_rivers_funkmf(kwargs):
    ours, river = LatentFactors(**kwargs), reco.FunkMF(**kwargs)
    events = stream()
    for first in range(0, len(events), 700):  # batches: latents carry across calls
        ours.learn_many(events[first:first + 700])
    for user, item, y in events:
        river.learn_one(user, item, y)
    assert same(ours, river)
    assert ours.u_optimizer.n_iterations == river.u_optimizer.n_iterations == 3000
    assert ours.predict_one("u3", "i7") == river.predict_one("u3", "i7")


def test_learn_many_across_growth_forgetting_and_a_snapshot():
    # enough users and items to grow the arenas twice, a forgotten user who comes back
    # (a fresh draw), and a pickle round trip mid-stream: still River's latents bit for bit
    kwargs = {"n_factors": 6, "optimizer": optim.SGD(0.1), "l2": 0.01, "seed": 5}
    rng = np.random.default_rng(7)
    events = [(f"u{u}", f"i{i}", float(y)) for u, i, y in zip(
        rng.integers(700, size=6000), rng.integers(900, size=6000), rng.random(6000),
        strict=True)]
    ours, river = LatentFactors(**kwargs), reco.FunkMF(**kwargs)
    for first in range(0, 6000, 1000):
        if first == 3000:
            ours = pickle.loads(pickle.dumps(ours))
        if first == 2000:
            for user in ("u1", "u2", "u3"):
                ours.forget_user(user)
                river.u_latents.pop(user, None)
        ours.learn_many(events[first:first + 1000])
        for user, item, y in events[first:first + 1000]:
            river.learn_one(user, item, y)
    assert same(ours, river)
    assert len(ours.u_latents) == len(river.u_latents) > 600


def test_item_scores_read_the_latents_without_drawing_any():
    kw = {"n_factors": 4, "optimizer": optim.SGD(0.05), "l2": 0.001, "seed": 2}
    model, river = LatentFactors(**kw), reco.FunkMF(**kw)
    user = np.array([0.5, -1.0, 2.0, 0.25])
    out = np.zeros((2, 1))
    model.item_scores(["a", "never"], user, out, 0)  # nothing learned yet: zeros
    assert not out.any() and not model.i_latents
    model.learn_one("u0", "a", 1.0)
    river.learn_one("u0", "a", 1.0)
    triples = stream(200)
    model.learn_many(triples)
    for u, i, y in triples:
        river.learn_one(u, i, y)
    restored = pickle.loads(pickle.dumps(model))  # no arenas: made when first read
    ids = ["i3", "a", "never", "i7"]
    want = np.array([river.i_latents[i] if i in river.i_latents else np.zeros(4)
                     for i in ids]) @ user
    for m in (model, restored):
        before = set(m.i_latents)
        out = np.zeros((4, 1))
        m.item_scores(ids, user, out, 0)
        np.testing.assert_allclose(out[:, 0], want, rtol=1e-12, atol=1e-15)
        assert out[2, 0] == 0.0 and set(m.i_latents) == before  # nothing drawn for "never"
    assert same(restored, river)


def test_one_step_at_a_time_through_arena_growth():
    # rewards learn one step per call: new items and users keep growing the arenas between
    # batches, and every step still lands in the vectors River's dicts hold
    kwargs = {"n_factors": 4, "optimizer": optim.SGD(0.1), "l2": 0.01, "seed": 9}
    ours, river = LatentFactors(**kwargs), reco.FunkMF(**kwargs)
    events = [(f"u{t % 300}", f"i{t}", float(t % 3)) for t in range(1500)]  # a new item each
    ours.learn_many(events[:10])  # the arenas exist from here on
    for user, item, y in events[:10]:
        river.learn_one(user, item, y)
    for user, item, y in events[10:]:
        ours.learn_many([(user, item, y)])
        river.learn_one(user, item, y)
    assert len(ours._item_arena.matrix) > 1000  # grown several times, one step at a time
    assert same(ours, river)
    assert np.array_equal(oracles.item_vectors(ours, ["i5", "new"]),
                          [river.i_latents["i5"], np.zeros(4)])


def test_item_scores_follow_items_learned_since():
    kw = {"n_factors": 4, "optimizer": optim.SGD(0.05), "l2": 0.001, "seed": 4}
    model = LatentFactors(**kw)
    user = np.array([0.5, -1.0, 2.0, 0.25])
    ids = ("i3", "fresh", "i9", "never")
    model.learn_one("u0", "i3", 1.0)
    out = np.full((4, 3), 7.0)
    model.item_scores(ids, user, out, 1)
    assert np.allclose(out[:, 1], oracles.item_vectors(model, ids) @ user)
    assert np.array_equal(out[:, [0, 2]], np.full((4, 2), 7.0))  # other columns untouched
    model.learn_many(stream(300))
    memo: dict = {}  # kept with the list, as a re-ranked pool's candidate set keeps it
    for step in range(3):
        out = np.zeros((4, 2))
        model.item_scores(ids, user, out, 0, memo if step % 2 else None)
        model.item_scores(ids, user, out, 1, memo)  # the memo's rows give the same scores
        assert np.array_equal(out[:, 0], out[:, 1]) and memo
        assert np.allclose(out[:, 0], oracles.item_vectors(model, ids) @ user)
        assert out[1, 0] != 0.0 if step else out[1, 0] == 0.0  # "fresh" learned after step 0
        assert out[3, 0] == 0.0  # never learned: scores 0, and reading draws nothing
        assert "never" not in model.i_latents
        model.learn_many([("u1", "fresh", 1.0), ("u2", "i9", 0.0)])  # moves i9's vector
