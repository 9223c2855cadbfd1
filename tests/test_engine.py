"""The closed loop in one process: rank, reward join, replay, forget, bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from filebytes import files_holding

from engine import Engine, UnknownDecisionError, ValidationError
from engine.errors import StoreError
from engine.shard import CandidateSet


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def cands(n=5, d=2):
    return [{"id": f"i{k}", "topics": [f"t{k % 3}"], "features": [float(k % 2), 1.0][:d]}
            for k in range(n)]


def stream(n_users=20, n_events=400, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n_events):
        u = int(rng.integers(n_users))
        t = ["view", "click", "purchase", "search", "dislike"][int(rng.integers(5))]
        e = {"user_id": f"u{u}", "type": t, "ts": float(i), "item_id": f"i{int(rng.integers(30))}",
             "topics": [f"t{int(rng.integers(6))}"], "event_id": f"e{i}"}
        if t == "search":
            e["text"] = f"jazz vinyl {u}"
        out.append(e)
    return out


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def eng(tmp_path, clock):
    e = Engine(tmp_path / "data", policy="lints", item_features=2, wait_window=60.0,
               clock=clock, seed=3)
    yield e
    e.close()


def test_rank_records_honest_decisions(eng):
    d = eng.rank("u1", cands())
    assert d.chosen in d.candidate_ids and d.ranking[0] == d.chosen
    assert sorted(d.ranking) == sorted(d.candidate_ids)
    assert sum(d.probabilities) == pytest.approx(1.0)
    assert d.propensity == pytest.approx(d.probabilities[d.candidate_ids.index(d.chosen)])
    assert 0 < d.propensity < 1  # Thompson sampling over 5 fresh arms is not deterministic
    row = eng.store.decision(d.decision_id)
    assert row["status"] == "pending" and row["variant"] == "default"
    assert np.frombuffer(row["probabilities"]).tolist() == d.probabilities


def test_reward_join_statuses(eng, clock):
    d1 = eng.rank("u1", cands())
    d2 = eng.rank("u1", cands())
    assert eng.reward(d1.decision_id, 1.0).status == "joined"
    assert eng.reward(d1.decision_id, 1.0).status == "duplicate"
    version = eng.learners["default"].version
    clock.t += 61.0  # d2's window closes: the default reward is learned
    eng.rank("u2", cands())
    assert eng.store.decision(d2.decision_id)["status"] == "default"
    assert eng.learners["default"].version == version + 1
    late = eng.reward(d2.decision_id, 1.0)
    assert (late.status, late.learned) == ("late", False)
    assert eng.reward(d2.decision_id, 1.0).status == "duplicate"
    assert eng.learners["default"].version == version + 1  # late rewards are not learned
    with pytest.raises(UnknownDecisionError, match="no decision 'nope'"):
        eng.reward("nope", 1.0)
    statuses = [r[0] for r in eng.store.db.execute("SELECT status FROM rewards ORDER BY seq")]
    assert statuses == ["joined", "duplicate", "default", "late", "duplicate"]


def test_rewards_update_the_profile(eng):
    d = eng.rank("u9", [{"id": "x", "topics": ["jazz"]}, {"id": "y", "topics": ["jazz"]}])
    eng.reward(d.decision_id, 1.0)
    p = eng.profile("u9")
    assert p["interests"]["topic:jazz"] == pytest.approx(1.0)
    assert p["engagement"]["by_type"] == {"reward": 1}


def test_learning_closes_the_loop(tmp_path):
    """On a planted preference the learner's probabilities move to the better item."""
    clock = Clock()
    with Engine(None, policy="lints", item_features=2, seed=0, clock=clock) as eng:
        items = [{"id": "good", "features": [1.0, 0.0]}, {"id": "bad", "features": [0.0, 1.0]}]
        first = eng.rank("u", items).probabilities[0]
        for i in range(300):
            d = eng.rank(f"u{i % 7}", items)
            eng.reward(d.decision_id, 1.0 if d.chosen == "good" else 0.0)
            clock.t += 1
        last = eng.rank("u", items).probabilities[0]
    assert first < 0.8 and last > 0.95


def test_bad_requests_name_the_field_and_change_nothing(eng):
    eng.ingest(stream(n_events=50))
    before = (eng.store.count_events(), eng.profile("u1"))
    bad_batches = [
        ([{"user_id": "u1", "type": "view", "ts": 1.0}, {"user_id": "u1", "type": "zz", "ts": 1.0}],
         r"events\[1\]\.type"),
        ([{"user_id": "", "type": "view", "ts": 1.0}], r"events\[0\]\.user_id"),
    ]
    for batch, field in bad_batches:
        with pytest.raises(ValidationError, match=field):
            eng.ingest(batch)
    for args, field in [
        (("", cands()), r"requests\[0\]\.user_id"),
        (("u1", []), r"requests\[0\]\.candidates"),
        (("u1", [{"id": "a"}, {"id": "a"}]), r"requests\[0\]\.candidates\[1\]\.id"),
        (("u1", [{"id": "a", "features": [1.0]}]), r"requests\[0\]\.candidates\[0\]\.features"),
        (("u1", [{"id": "a", "features": [1.0, float("inf")]}]), r"candidates\[0\]\.features"),
        (("u1", [{"id": "a", "features": [1.0, -1e300]}]),
         r"candidates\[0\]\.features: must be finite numbers of magnitude at most 1e\+18"),
        (("u1", [{"id": "a", "features": ["1.5", "2"]}]), r"candidates\[0\]\.features"),
        (("u1", cands(), {"hour": 3}), r"requests\[0\]\.context\.hour"),
    ]:
        with pytest.raises(ValidationError, match=field):
            eng.rank(*args)
    with pytest.raises(ValidationError, match="slate_size"):
        eng.rank("u1", cands(3), slate_size=4)
    with pytest.raises(ValidationError, match="^value"):
        eng.reward("whatever", float("nan"))
    with pytest.raises(ValidationError, match="^decision_id"):
        eng.reward(None, 1.0)
    assert (eng.store.count_events(), eng.profile("u1")) == before
    assert eng.store.db.execute("SELECT COUNT(*) FROM decisions").fetchone()[0] == 0


def test_huge_features_are_refused_so_a_restart_can_learn_every_logged_decision(tmp_path):
    # decisions log their features as float32: a value past 3.4e38 (or a cross of item
    # features and context past it) would come back as infinity after a restart, and
    # learning the pending decision's reward would then fail (it once did)
    kw = {"policy": "lints", "item_features": 1, "context_features": ("scale",)}
    eng = Engine(tmp_path, clock=lambda: 5.0, **kw)
    for args, field in [
        (([{"id": "a", "features": [1e300]}, "b"],), r"candidates\[0\]\.features"),
        ((["a", {"id": "b", "features": [np.float32(3e38)]}],), r"candidates\[1\]\.features"),
        ((["a", "b"], {"scale": 1e19}), r"context\.scale: must be finite numbers"),
    ]:
        with pytest.raises(ValidationError, match=field):
            eng.rank("u1", *args)
    big = 1e18  # the largest accepted: its cross with the largest context is 1e36
    d = eng.rank("u1", [{"id": "a", "features": [big]}, {"id": "b", "features": [-big]}],
                 {"scale": -big})
    eng.close()
    again = Engine(tmp_path, clock=lambda: 6.0, **kw)
    phi = again.joiner.waiting.get(d.decision_id).phi
    assert np.isfinite(phi).all() and abs(phi).max() == pytest.approx(1e36, rel=1e-6)
    assert again.reward(d.decision_id, 1.0).status == "joined"
    again.close()


def test_duplicate_event_ids_are_not_counted_twice(eng):
    evs = stream(n_events=100)
    assert eng.ingest(evs).accepted == 100
    again = eng.ingest(evs[50:] + [{**evs[0], "event_id": "new"}])
    assert (again.accepted, again.duplicates) == (1, 50)
    assert eng.store.count_events() == 101


def test_replay_from_snapshot_rebuilds_identical_profiles(tmp_path, clock):
    evs = stream(n_users=30, n_events=600)
    kw = dict(policy="uniform", item_features=2, clock=clock, seed=1)
    ref = Engine(tmp_path / "ref", **kw)
    ref.ingest(evs)
    expected = {f"u{u}": ref.profile(f"u{u}", now=700.0) for u in range(30)}
    ref.close()

    eng = Engine(tmp_path / "d", **kw)
    eng.ingest(evs[:250])
    eng.snapshot()
    eng.ingest(evs[250:])
    # simulate a crash: drop the engine without close(), so only snapshot + log remain
    eng.store.db.close()
    eng.store._lock.close()
    reopened = Engine(tmp_path / "d", **kw)
    assert reopened.backend.shards[0].last_seq == 600
    got = {f"u{u}": reopened.profile(f"u{u}", now=700.0) for u in range(30)}
    reopened.close()
    assert got == expected


def test_reopen_continues_policy_and_pending_joins(tmp_path, clock):
    kw = dict(policy="lints", item_features=2, clock=clock, seed=2, wait_window=100.0)
    eng = Engine(tmp_path / "d", **kw)
    for _ in range(20):
        d = eng.rank("u1", cands())
        eng.reward(d.decision_id, float(d.chosen == "i1"))
    pending = eng.rank("u1", cands())
    version = eng.learners["default"].version
    eng.close()
    eng = Engine(tmp_path / "d", **kw)
    assert eng.learners["default"].version == version
    assert len(eng.joiner) == 1
    assert eng.reward(pending.decision_id, 1.0).status == "joined"
    eng.close()


def test_forget_leaves_nothing_in_the_data_directory(tmp_path, clock):
    data = tmp_path / "d"
    secret = "user-7f3a9c-secret"
    eng = Engine(data, policy="lints", item_features=2, clock=clock, seed=0)
    evs = stream(n_events=200)
    evs += [{"user_id": secret, "type": "search", "ts": 5.0 + i, "text": "private words",
             "event_id": f"{secret}-e{i}"} for i in range(30)]
    eng.ingest(evs)
    eng.snapshot()
    for _ in range(5):
        d = eng.rank(secret, cands())
        eng.reward(d.decision_id, 1.0)
    eng.rank(secret, cands())  # one still pending
    eng.snapshot()
    counts = eng.forget(secret)
    assert counts == {"profile": 1, "events": 35, "decisions": 6, "rewards": 5, "quarantine": 0,
                      "items": 0, "database": "loopwise.sqlite", "snapshot": 0,
                      "wal": "truncated", "tries": 1}
    assert eng.profile(secret) is None
    eng.rank("u1", cands())  # the engine keeps working
    eng.close()
    assert files_holding(data, [secret.encode(), b"private words"]) == {}
    eng = Engine(data, policy="lints", item_features=2, clock=clock, seed=0)
    assert eng.profile(secret) is None and eng.profile("u1") is not None
    eng.close()


def test_data_directory_settings_are_checked(tmp_path, clock):
    Engine(tmp_path / "d", policy="uniform", item_features=2, clock=clock).close()
    with pytest.raises(StoreError, match="shards"):
        Engine(tmp_path / "d", policy="uniform", item_features=2, shards=2, clock=clock)
    eng = Engine(tmp_path / "d", policy="uniform", item_features=2, clock=clock)
    with pytest.raises(StoreError, match="in use"):
        Engine(tmp_path / "d", policy="uniform", item_features=2, clock=clock)
    eng.close()


def test_rank_batch_matches_shards_and_slates(tmp_path, clock):
    with Engine(None, policy="lints", item_features=2, shards=3, clock=clock, seed=4) as eng:
        eng.ingest(stream(n_events=200))
        reqs = [{"user_id": f"u{i}", "candidates": cands(4 + i % 3)} for i in range(12)]
        ds = eng.rank_batch(reqs, slate_size=3)
        for req, d in zip(reqs, ds, strict=True):
            assert d.user_id == req["user_id"] and len(d.ranking) == len(req["candidates"])
            assert len(set(d.ranking[:3])) == 3 and len(d.slot_propensities) == 3
            assert all(0 < p <= 1 for p in d.slot_propensities)


def test_constructor_validation(tmp_path):
    for kwargs, field in [
        ({"shards": 0}, "shards"), ({"wait_window": -1}, "wait_window"),
        ({"backend": "spark"}, "backend"), ({"policy": "nonsense"}, "policy: unknown policy"),
        ({"profile": {"half_life": -3}}, "profile.half_life"), ({"learn_batch": 0}, "learn_batch"),
    ]:
        with pytest.raises(ValidationError, match=f"^{field}"):
            Engine(tmp_path / "x", **kwargs)


def test_reward_batch_is_atomic_and_reports_each(eng):
    ds = [eng.rank(f"u{i}", cands()) for i in range(4)]
    with pytest.raises(UnknownDecisionError):
        eng.reward_batch([(ds[0].decision_id, 1.0), ("ghost", 1.0)])
    with pytest.raises(ValidationError, match=r"^rewards\[1\]\.value"):
        eng.reward_batch([(ds[0].decision_id, 1.0), (ds[1].decision_id, "x")])
    assert eng.store.db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 0
    out = eng.reward_batch([(ds[0].decision_id, 1.0), (ds[1].decision_id, 0.0),
                            (ds[0].decision_id, 1.0)])
    assert [r.status for r in out] == ["joined", "joined", "duplicate"]
    assert len(eng.joiner) == 2


def test_candidate_cache_follows_what_each_request_says():
    from engine.featurizer import Featurizer

    f = Featurizer(item_features=2)
    cands = [{"id": "a", "topics": ["x"], "features": [1, 0]}, {"id": "b"}]
    views, items = f.prepare_candidates(cands)
    again = f.prepare_candidates(cands)[0]  # the items known: their views reused
    assert [v.topics for v in views] == [("x",), ()] and items.tolist() == [[1, 0], [0, 0]]
    assert all(a is b for a, b in zip(again, views, strict=True))
    cands[0]["topics"].append("y")  # changed in place: the cache kept its own copy
    cands[1]["features"] = [0.5, 2]
    views, items = f.prepare_candidates(cands)
    assert views[0].topics == ("x", "y") and items.tolist() == [[1, 0], [0.5, 2]]
    again, items_again = f.prepare_candidates(cands)  # an equal list: the same result
    assert list(again) == list(views) and np.array_equal(items_again, items)
    # a set built from cache entries derives what one built from its views does, for one
    # topic each, several, none, and tags
    mixed = [{"id": "c\u00e9\"", "topics": ["x"]}, {"id": "d", "topics": ["x"], "tags": ["hot"]}]
    for request in (mixed, [mixed[0]], [{"id": "e", "topics": ["x", "y"]}, mixed[0]]):
        first = f.prepare_candidates(request)[0]  # (new items: each one checked)
        fast = f.prepare_candidates([dict(c) for c in request])[0]  # (all known)
        slow = CandidateSet(list(fast))
        assert (fast.ids, fast.topic_keys, fast.any_tags) == (slow.ids, slow.topic_keys,
                                                              slow.any_tags)
        backwards = range(len(fast))[::-1]
        assert fast.ids_json == slow.ids_json
        assert fast.json_of(backwards) == slow.json_of(backwards)
        assert (first.ids, first.topic_keys, first.any_tags) == (slow.ids, slow.topic_keys,
                                                                 slow.any_tags)
    cands[1]["features"][0] = 0.25  # changed in place again: seen, and not reused
    assert f.prepare_candidates(cands)[1].tolist() == [[1, 0], [0.25, 2]]
    arrays = [{"id": "a", "topics": ["x", "y"], "features": np.array([3.0, 4.0])}, {"id": "b"}]
    for _ in range(2):  # numpy rows are never compared to a cached list
        assert f.prepare_candidates(arrays)[1].tolist() == [[3, 4], [0, 0]]
    assert pickle.loads(pickle.dumps(views)).ids == ("a", "b")  # as sent to a Ray actor

    class Odd(list):  # compares like nothing else: the cache must not trip on it
        def __eq__(self, other):
            raise RuntimeError("no comparing me")

    with pytest.raises(ValidationError, match=r"candidates\[0\]\.topics"):
        f.prepare_candidates([{**cands[0], "topics": Odd(["x", 1])}, cands[1]])
    with pytest.raises(ValidationError, match=r"candidates\[1\]\.features"):
        f.prepare_candidates([cands[0], {"id": "b", "features": [0.5, float("nan")]}])
    with pytest.raises(ValidationError, match=r"candidates\[1\]\.id"):
        f.prepare_candidates([cands[0], dict(cands[0])])


@pytest.mark.parametrize("row, reason", [
    ([[1.0], [2.0]], "magnitude"),  # rows of rows, even of the right length and size
    ("ab", "list of 2 numbers"),  # a string of the right length
    ([1.0, "2"], "numbers only"),
    ([1.0, 2.0, 3.0], "list of 2 numbers"),
    ([1e19, 0.0], "magnitude"),
    ([float("-inf"), 0.0], "magnitude"),
    ({"a": 1.0, "b": 2.0}, "list of 2 numbers"),
    (7.0, "list of 2 numbers"),
])
def test_item_feature_rows_are_checked_one_by_one(row, reason):
    from engine.featurizer import Featurizer

    f = Featurizer(item_features=2)
    good = {"id": "a", "features": [True, 3]}  # booleans and integers are numbers
    with pytest.raises(ValidationError, match=rf"candidates\[1\]\.features: .*{reason}"):
        f.prepare_candidates([good, {"id": "b", "features": row}])
    items = f.prepare_candidates([good, {"id": "b", "features": [np.float32(0.5), 2]}])[1]
    assert items.dtype == np.float64 and items.tolist() == [[1.0, 3.0], [0.5, 2.0]]


def test_build_pads_only_shorter_requests():
    from engine.featurizer import Featurizer

    f = Featurizer(item_features=3, context_features=("mobile", "hour"))
    rng = np.random.default_rng(0)
    user, inter, items = rng.random(4), rng.random((6, 5)), rng.random((6, 3))
    ctx = f.context_vector({"mobile": 1, "hour": 0.5})
    phi, mask = f.build([user], [inter], [items], [ctx])
    assert mask is None and phi.shape == (1, 6, f.n_features)  # no padding: no mask
    both, mask = f.build([user, user], [inter, inter[:4]], [items, items[:4]], [ctx, ctx])
    assert mask.tolist() == [[True] * 6, [True] * 4 + [False] * 2]
    assert np.array_equal(both[0], phi[0]) and np.array_equal(both[1, :4], phi[0, :4])
    assert not both[1, 4:].any()  # padding rows are zeros
    none = f.build([user], [inter], [items], [f.context_vector(None)])[0]
    assert np.array_equal(none[0, :, -2:], 0 * inter[:, :2])


def test_decision_log_rows_hold_what_the_decisions_say(eng):
    import json
    import struct

    from engine.store import compact_json

    weird = [{"id": f'caf\u00e9 "{i}"\\', "topics": ["t\u00e9"], "features": [1.0, i]}
             for i in range(5)]
    decisions = [eng.rank("u1", weird) for _ in range(3)]
    decisions += eng.rank_batch([{"user_id": "u2", "candidates": weird}], slate_size=2)
    for d in decisions:
        row = eng.store.decision(d.decision_id)
        assert row["ranking"] == compact_json(d.ranking)
        assert row["candidate_ids"] == compact_json(d.candidate_ids)
        meta = {"id": d.chosen, "p": d.propensity, "topics": ["t\u00e9"], "tags": []}
        if len(d.slot_propensities) > 1:  # a slate's later slots (id, topics, tags) follow
            meta["slots"] = [[i, ["t\u00e9"], []] for i in d.ranking[1:len(d.slot_propensities)]]
        assert row["chosen_meta"] == compact_json(meta)
        assert json.loads(row["ranking"]) == d.ranking
        slots = list(struct.unpack(f"<{len(d.slot_propensities)}d", row["slot_probabilities"]))
        assert slots == d.slot_propensities


def test_joined_decisions_leave_no_expiry_entries_behind():
    # each decision's expiry entry stays until its deadline; once most have joined, the
    # joiner drops the stale entries, so memory follows the decisions still pending
    import random

    from engine.decisions import Pending
    from engine.join import WaitList

    joiner, rng, kept = WaitList(), random.Random(0), []
    for i in range(20_000):
        deadline = 1000.0 + rng.randrange(50)  # many equal deadlines: ties by id
        joiner.add(Pending(f"d{i:05d}", "u", deadline, "default", np.zeros(1), 0.5, "a"))
        assert len(joiner._heap) <= 2 * len(joiner) + 1024
        if i % 10:
            joiner.pop(f"d{i:05d}")  # joined
        else:
            kept.append((deadline, f"d{i:05d}"))
    assert len(joiner) == len(kept) == 2_000
    assert [p.decision_id for p in joiner.expire(1025.0)] == [d for t, d in sorted(kept) if t < 1025.0]
    assert [p.decision_id for p in joiner.expire(2000.0)] == [d for t, d in sorted(kept) if t >= 1025.0]
    assert len(joiner) == 0


def test_decisions_due_together_expire_in_the_order_they_were_made():
    from engine.decisions import Pending
    from engine.join import WaitList

    w = WaitList()
    ids = ["f3", "a1", "c2", "0b"]  # random ids sort in no particular order
    for did in ids:
        w.add(Pending(did, "u1", deadline=10.0, variant="default", phi=np.zeros(2),
                      propensity=0.5, item_id="i1"))
    w.pop("c2")
    for i in range(3000):  # enough joined entries left behind to compact the heap
        w.add(Pending(f"z{i}", "u1", deadline=5.0, variant="default", phi=np.zeros(2),
                      propensity=0.5, item_id="i1"))
        w.pop(f"z{i}")
    w.add(Pending("00", "u1", deadline=10.0, variant="default", phi=np.zeros(2),
                  propensity=0.5, item_id="i1"))
    assert [p.decision_id for p in w.expire(now=11.0)] == ["f3", "a1", "0b", "00"]
