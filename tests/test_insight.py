"""The console's interest history is the profile's own decay, drift windows included: its
last point equals the profile's interests at the last event."""

from __future__ import annotations

import pytest

from engine import Engine, insight


def test_interest_history_ends_at_the_profiles_interests(tmp_path):
    eng = Engine(tmp_path / "d", policy="uniform", clock=lambda: 10_000.0,
                 profile={"half_life": 600.0, "drift_period": 900.0})
    # liked jazz (with a tag), then rock: the change detector fires and forgetting speeds up
    eng.ingest([{"user_id": "u", "type": "click", "ts": 1000.0 + 10 * i,
                 "topics": ["jazz" if i < 80 else "rock"], "tags": ["live"] if i % 3 else []}
                for i in range(160)])
    profile = eng.profile("u")
    windows = profile["drift"]["windows"]
    assert profile["drift"]["detections"] >= 1 and windows  # the case this test is about
    hist = insight.interest_history(eng.store, eng.event_types, eng.config.profile, "u",
                                    points=7, windows=windows)
    last = {k: v[-1] for k, v in hist["series"].items()}
    assert hist["times"][-1] == profile["engagement"]["last_ts"]
    assert last == pytest.approx({k: profile["interests"][k] for k in last}, abs=2e-6)
    # without the windows the chart would be wrong by far more than that
    plain = insight.interest_history(eng.store, eng.event_types, eng.config.profile, "u",
                                     points=7)
    assert abs(plain["series"]["topic:jazz"][-1] - profile["interests"]["topic:jazz"]) > 1e-3
    eng.close()
