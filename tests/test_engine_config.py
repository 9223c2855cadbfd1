"""EngineConfig: one validated object of every engine setting, from Python or a mapping."""

from __future__ import annotations

import pytest

from engine import Engine, EngineConfig, ValidationError
from engine.profile import ProfileConfig


@pytest.mark.parametrize(("mapping", "message"), [
    ({"wait_window": -1}, "engine.wait_window: must be >= 0.0 (got -1)"),
    ({"foo": 1}, "engine.foo: unknown setting; allowed: ['async_learning', 'backend', "),
    ({"backend": "spark"}, "engine.backend: must be 'inline' or 'ray' (got 'spark')"),
    ({"learner": "gpu"}, "engine.learner: must be 'auto', 'local' or 'ray' (got 'gpu')"),
    ({"synchronous": "OFF"}, "engine.synchronous: must be 'NORMAL' or 'FULL' (got 'OFF')"),
    ({"shards": 0}, "engine.shards: must be an integer >= 1 (got 0)"),
    ({"learn_batch": 1.5}, "engine.learn_batch: must be an integer >= 1 (got 1.5)"),
    ({"reward_range": [0, 1], "default_reward": 2}, "engine.default_reward: must lie in [0, 1] (got 2)"),
    ({"reward_range": 5}, "engine.reward_range: must be a (low, high) pair (got 5)"),
    ({"profile": {"half_life": -3}}, "engine.profile.half_life: must be a finite number > 0"),
    ({"profile": {"half_lives": 3}}, "engine.profile.half_lives: unknown setting; allowed: "),
    ({"item_features": -1}, "engine.item_features: must be an integer >= 0 (got -1)"),
    ({"context_features": ["a", "a"]}, "engine.context_features: names must be unique"),
    ({"event_types": {"click": 2.0}}, "engine.event_types['click']: is a built-in type"),
    ({"variants": {"a": {"policy": "lints", "weight": 0}}},
     "engine.variants.a.weight: must be > 0.0 (got 0)"),
    ({"variants": {"a": {"polcy": "lints"}}},
     "engine.variants.a.polcy: unknown key; allowed: policy, params, weight"),
    ({"variants": {"a": {}}, "policy_params": {"l2": 1.0}},
     "engine.policy_params: give each variant's params in variants instead"),
    ({"max_event_lead": -1}, "engine.max_event_lead: must be a finite number >= 0 (got -1)"),
])
def test_a_mapping_names_the_bad_key_in_its_own_terms(mapping, message):
    with pytest.raises(ValidationError) as info:
        EngineConfig.from_mapping(mapping)
    assert str(info.value).startswith(message)
    assert info.value.field.startswith("engine.")


def test_the_same_checks_name_the_setting_in_python():
    with pytest.raises(ValidationError, match=r"^wait_window: must be >= 0.0 \(got -1\)"):
        EngineConfig(wait_window=-1)
    with pytest.raises(ValidationError, match=r"^serve\.engine\.seed: must be an integer >= 0"):
        EngineConfig.from_mapping({"seed": -1}, where="serve.engine")
    with pytest.raises(ValidationError, match=r"^engine: must be a mapping"):
        EngineConfig.from_mapping(["policy"])
    with pytest.raises(TypeError):
        Engine(None, polcy="lints")  # a misspelled keyword is refused, not swallowed


def test_settings_are_normalized_and_frozen():
    cfg = EngineConfig.from_mapping({"profile": {"half_life": 60.0}, "context_features":
                                     ["mobile"], "reward_range": [0, 1], "wait_window": 5})
    assert isinstance(cfg.profile, ProfileConfig) and cfg.profile.half_life == 60.0
    assert cfg.context_features == ("mobile",) and cfg.reward_range == (0.0, 1.0)
    assert type(cfg.wait_window) is float and cfg.limits.reward_range == (0.0, 1.0)
    assert cfg.limits.min_event_time == 946_684_800.0  # the wall clock's floor
    assert EngineConfig(clock=lambda: 0.0).limits.min_event_time == 0.0
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]
    assert set(EngineConfig.setting_names()) >= {"policy", "variants", "wait_window", "clock"}


def test_an_engine_from_a_config_decides_as_one_from_keywords(tmp_path):
    settings = {"policy": "lints", "item_features": 2, "seed": 9, "clock": lambda: 50.0}
    cands = [{"id": f"i{k}", "features": [k / 5, 1.0]} for k in range(6)]
    out = []
    for eng in (Engine(tmp_path / "a", **settings),
                Engine(tmp_path / "b", EngineConfig(**settings)),
                Engine(tmp_path / "c", EngineConfig(policy="uniform"),
                       **{k: v for k, v in settings.items() if k != "policy"},
                       policy="lints")):
        out.append([(d.ranking, d.probabilities) for d in
                    (eng.rank(f"u{i}", cands) for i in range(20))])
        assert eng.config.policy == "lints"
        eng.close()
    assert out[0] == out[1] == out[2]


def test_a_decision_id_is_checked_without_moving_the_queue_into_sqlite(tmp_path):
    eng = Engine(tmp_path, policy="uniform", clock=lambda: 50.0)
    calls = []
    flush = eng.store.flush
    eng.store.flush = lambda: (calls.append(1), flush())[1]
    for i in range(30):
        d = eng.rank("u1", ["a", "b"], decision_id=f"d{i}")
        eng.reward(d.decision_id, 1.0)  # joined: the id no longer waits, it is queued
        with pytest.raises(ValidationError, match=r"^requests\[0\]\.decision_id: is already in use"):
            eng.rank("u2", ["a", "b"], decision_id=f"d{i}")
    assert calls == []  # no rank or reward forced a group commit
    eng.store.flush = flush
    eng.store.flush()  # once in SQLite, the id is found there
    assert eng.store.has_decision("d3") and not eng.store.has_decision("d99")
    with pytest.raises(ValidationError, match=r"^requests\[0\]\.decision_id: is already in use"):
        eng.rank("u2", ["a"], decision_id="d3")
    with pytest.raises(ValidationError, match=r"^requests\[1\]\.decision_id: is already in use"):
        eng.rank_batch([{"user_id": "u", "candidates": ["a"], "decision_id": "x"},
                        {"user_id": "v", "candidates": ["a"], "decision_id": "x"}])
    eng.close()


def test_stats_count_each_policys_drift_detections(tmp_path):
    eng = Engine(tmp_path, variants={"a": {"policy": "lints"}, "b": {"policy": "uniform"}},
                 clock=lambda: 50.0)
    assert eng.stats()["drift_detections"] == {"a": 0, "b": 0}
    for i in range(50):
        d = eng.rank(f"u{i}", ["x", "y"])
        eng.reward(d.decision_id, float(i % 2))
    drift = eng.stats()["drift_detections"]
    assert drift == {k: lrn.policy.drift_detections for k, lrn in eng.learners.items()}
    eng.close()
