"""Known-answer tests of profile learning: decay, weights, drift, keywords, replay order."""

from __future__ import annotations

import math

import pytest

from engine.events import EventTypes, validate_events
from engine.profile import ProfileConfig
from engine.shard import ProfileShard

HOUR = 3600.0


def shard_with(events, **cfg):
    shard = ProfileShard(0, ProfileConfig(**cfg), EventTypes())
    evs = validate_events(events)
    shard.apply(evs, list(range(1, len(evs) + 1)))
    return shard


def interests(shard, user="u", now=None):
    return shard.profile_json(user, now)["interests"]


def test_half_life_decay_is_exact():
    shard = shard_with([{"user_id": "u", "type": "click", "ts": 0.0, "topics": ["jazz"]}],
                       half_life=HOUR)
    for n_half_lives in (0, 1, 2, 3.5):
        got = interests(shard, now=n_half_lives * HOUR)["topic:jazz"]
        assert got == pytest.approx(0.5 ** n_half_lives, abs=1e-6)


def test_decay_sums_contributions_and_ignores_arrival_order():
    evs = [{"user_id": "u", "type": "click", "ts": t, "topics": ["jazz"]} for t in (0.0, HOUR, 2 * HOUR)]
    in_order = interests(shard_with(evs, half_life=HOUR), now=2 * HOUR)["topic:jazz"]
    shuffled = interests(shard_with([evs[2], evs[0], evs[1]], half_life=HOUR), now=2 * HOUR)
    expected = 0.25 + 0.5 + 1.0
    assert in_order == pytest.approx(expected, abs=1e-6)
    assert shuffled["topic:jazz"] == pytest.approx(expected, abs=1e-6)


def test_event_type_weights():
    types = ["view", "click", "purchase", "dislike"]
    evs = [{"user_id": "u", "type": t, "ts": 0.0, "topics": [t]} for t in types]
    evs.append({"user_id": "u", "type": "rate", "ts": 0.0, "value": 5.0, "topics": ["rated5"]})
    evs.append({"user_id": "u", "type": "rate", "ts": 0.0, "value": 2.0, "topics": ["rated2"]})
    got = interests(shard_with(evs), now=0.0)
    assert got["topic:view"] == pytest.approx(0.2)
    assert got["topic:click"] == pytest.approx(1.0)
    assert got["topic:purchase"] == pytest.approx(3.0)
    assert got["topic:dislike"] == pytest.approx(-2.0)
    assert got["topic:rated5"] == pytest.approx(1.0)
    assert got["topic:rated2"] == pytest.approx(-0.5)
    assert got["topic:view"] < got["topic:click"] < got["topic:purchase"]


def test_weight_is_split_over_an_events_topics():
    got = interests(shard_with([{"user_id": "u", "type": "click", "ts": 0.0,
                                 "topics": ["a", "b"], "tags": ["c", "d"]}]), now=0.0)
    assert got == {"topic:a": 0.25, "topic:b": 0.25, "tag:c": 0.25, "tag:d": 0.25}


def test_custom_event_type_weight():
    shard = ProfileShard(0, ProfileConfig(), EventTypes(custom={"share": 1.5}))
    evs = validate_events([{"user_id": "u", "type": "share", "ts": 0.0, "topics": ["x"]}],
                          shard.event_types)
    shard.apply(evs, [1])
    assert interests(shard, now=0.0)["topic:x"] == pytest.approx(1.5)


def planted_shift(drift_threshold):
    """Hourly clicks on 'old' for 40 h, then on 'new' for 10 h."""
    evs = [{"user_id": "u", "type": "click", "ts": h * HOUR, "topics": ["old"]} for h in range(40)]
    evs += [{"user_id": "u", "type": "click", "ts": (40 + h) * HOUR, "topics": ["new"]}
            for h in range(10)]
    return shard_with(evs, half_life=24 * HOUR, drift_threshold=drift_threshold,
                      drift_fast_factor=8.0, drift_period=24 * HOUR)


def test_drift_speeds_up_forgetting_after_a_planted_shift():
    detecting = planted_shift(drift_threshold=1.0)
    blind = planted_shift(drift_threshold=1e9)  # detector never fires
    now = 49 * HOUR
    p_detect = detecting.profile_json("u", now)
    p_blind = blind.profile_json("u", now)
    assert p_detect["drift"]["detections"] >= 1
    assert p_blind["drift"]["detections"] == 0
    # the detector fired after the shift, not during the stable phase
    first_window = p_detect["drift"]["windows"][0]
    assert 40 * HOUR <= first_window[0] <= 46 * HOUR
    old_detect, old_blind = p_detect["interests"]["topic:old"], p_blind["interests"]["topic:old"]
    # without detection the old interest still dominates; with it, the new one leads
    assert old_blind > p_blind["interests"]["topic:new"]
    assert p_detect["interests"]["topic:new"] > old_detect
    assert old_detect < 0.5 * old_blind


def test_a_snapshot_that_names_the_old_page_hinkley_class_still_restores(monkeypatch):
    # snapshots written while the engine had its own engine.pagehinkley.PageHinkley (River's
    # subclass, the same state) load into River's class
    import sys
    import types

    from river import drift

    old_module = types.ModuleType("engine.pagehinkley")

    class PageHinkley(drift.PageHinkley):
        pass

    PageHinkley.__module__ = old_module.__name__
    PageHinkley.__qualname__ = "PageHinkley"
    old_module.PageHinkley = PageHinkley
    monkeypatch.setitem(sys.modules, old_module.__name__, old_module)
    shard = planted_shift(drift_threshold=1.0)
    for profile in shard._profiles.values():
        profile.detector.__class__ = PageHinkley
    old_blob = shard.snapshot()
    assert b"engine.pagehinkley" in old_blob
    monkeypatch.delitem(sys.modules, old_module.__name__)  # the module is gone now
    restored = ProfileShard(0, ProfileConfig(drift_threshold=1.0), EventTypes()).restore(old_blob)
    assert restored.profile_json("u", 49 * HOUR) == shard.profile_json("u", 49 * HOUR)
    assert type(restored._profiles["u"].detector) is drift.PageHinkley


def test_drift_window_decay_is_piecewise_exact():
    shard = shard_with([{"user_id": "u", "type": "click", "ts": 0.0, "topics": ["a"]}],
                       half_life=HOUR, drift_fast_factor=4.0, drift_period=HOUR)
    profile = shard._profiles["u"]
    profile.fast_windows.append([HOUR, 2 * HOUR])  # one hour of 4x faster time
    # 3 h elapsed, one of them fast: 2 + 4 = 6 half-lives
    assert profile.interest("topic:a", 3 * HOUR) == pytest.approx(0.5 ** 6)


def test_keyword_interests_from_text():
    shard = shard_with([
        {"user_id": "u", "type": "search", "ts": 0.0, "text": "Jazz vinyl, jazz records"},
        {"user_id": "u", "type": "click", "ts": 0.0, "item_id": "i1", "text": "Great VINYL sound"},
    ])
    kw = shard.profile_json("u", 0.0)["keywords"]
    # search weight 0.5 split over 4 tokens (jazz twice); click weight 1 over 3 tokens
    assert kw["jazz"] == pytest.approx(0.25)
    assert kw["vinyl"] == pytest.approx(0.125 + 1 / 3)
    assert kw["records"] == pytest.approx(0.125)
    assert kw["great"] == pytest.approx(1 / 3)
    assert list(kw)[0] == "vinyl"


def test_engagement_latent_and_attributes():
    evs = [{"user_id": "u", "type": "view", "ts": float(t), "item_id": f"i{t % 3}",
            "attributes": {"region": "eu"}} for t in range(20)]
    evs += [{"user_id": "u", "type": "click", "ts": 20.0 + t, "item_id": "i0"} for t in range(20)]
    p = shard_with(evs).profile_json("u", 40.0)
    assert p["attributes"] == {"region": "eu"}
    assert p["engagement"]["events"] == 40
    assert p["engagement"]["by_type"] == {"view": 20, "click": 20}
    assert 0.5 < p["engagement"]["rate"] < 1.0
    assert len(p["latent_factors"]) == 8 and all(math.isfinite(v) for v in p["latent_factors"])


def test_profile_size_is_bounded():
    evs = [{"user_id": "u", "type": "click", "ts": float(t), "topics": [f"t{t}"],
            "text": f"word{t} other{t}"} for t in range(500)]
    profile = shard_with(evs)._profiles["u"]
    assert len(profile.interests) <= 64 and len(profile.keywords) <= 32


def test_pruning_keeps_the_strongest_interests():
    # 70 topics over time: interests decay, so the oldest are the weakest; topic t3 is
    # clicked again at the end, which makes it strong enough to stay
    evs = [{"user_id": "u", "type": "click", "ts": float(t), "topics": [f"t{t}"]}
           for t in range(70)]
    evs.insert(60, {"user_id": "u", "type": "purchase", "ts": 59.5, "topics": ["t3"]})
    profile = shard_with(evs)._profiles["u"]
    kept = {int(key.split(":t")[1]) for key in profile.interests}
    assert kept == {3, *range(7, 70)}
    # among equal weights the newest key goes: a tie at the boundary keeps the old ones
    evs = [{"user_id": "v", "type": "click", "ts": 0.0, "topics": [f"t{t}"]} for t in range(66)]
    profile = shard_with(evs)._profiles["v"]
    assert {int(key.split(":t")[1]) for key in profile.interests} == set(range(64))


def test_shard_features_are_the_oracles():
    # topic columns through kernels.topic_columns (one topic each, or several), latent
    # scores through kernels.row_dots: the oracles' floats (latent scores up to rounding:
    # BLAS may sum a dot product in another order)
    import numpy as np
    import oracles

    from engine.shard import Candidate, CandidateSet

    shard = ProfileShard(0, ProfileConfig(half_life=50.0), EventTypes())
    raw = [{"user_id": f"u{i % 3}", "type": ("view", "click", "dislike")[i % 3],
            "ts": float(i), "item_id": f"i{i % 7}", "topics": [f"t{i % 5}"]} for i in range(60)]
    raw.append({"user_id": "u3", "type": "click", "ts": 1.0, "item_id": "i1",
                "topics": ["t1"]})  # no views: no exposure
    events = validate_events(raw)
    shard.apply(events, list(range(1, len(events) + 1)))
    one = CandidateSet([Candidate(f"i{j}", [f"t{j % 6}"]) for j in range(9)])
    many = CandidateSet([Candidate(f"i{j}", [f"t{j % 6}", "t0"][:j % 3]) for j in range(9)])
    requests = [(u, c) for u in ("u0", "u1", "u3", "nobody") for c in (one, many)]
    got = shard.features(requests, 80.0)
    for (user_id, cands), (_, inter) in zip(requests, got, strict=True):
        profile = shard._profiles.get(user_id)
        if profile is None:
            assert not inter.any()
            continue
        want = np.zeros_like(inter)
        decay = profile.decay(80.0, 50.0)
        oracles.topic_columns(want, cands, profile.interests, profile.exposure, decay,
                              profile.mass.get("all", 0.0) * decay + 1.0,
                              profile.decay(80.0, shard.profile_config.exposure_half_life))
        assert np.array_equal(inter[:, [0, 4]], want[:, [0, 4]])
        latent = shard._mf.u_latents[user_id]
        np.testing.assert_allclose(inter[:, 3], oracles.item_vectors(shard._mf, cands.ids)
                                   @ latent, rtol=1e-12, atol=1e-15)
    assert got[0][1][:, 4].any() and not got[4][1][:, 4].any()  # u0 saw views; u3 did not
    assert got[0][1][:, 0].any() and got[0][1][:, 3].any()  # affinities and latent scores
