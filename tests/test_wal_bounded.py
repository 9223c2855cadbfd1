"""The store's WAL stays bounded under steady writes: past ``WAL_LIMIT`` the checkpoint
thread truncates it (under writes that never pause, a PASSIVE checkpoint alone never lets
SQLite restart the WAL, which then grows with every commit)."""

from __future__ import annotations

import os

from engine import Engine
from engine import store as store_module


def test_the_wal_is_truncated_under_steady_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(store_module, "WAL_LIMIT", 1 << 20)
    now = [1_700_000_000.0]
    eng = Engine(tmp_path / "d", policy="uniform", item_features=4, clock=lambda: now[0])
    wal = tmp_path / "d" / "loopwise.sqlite-wal"
    cands = [{"id": f"i{k}", "topics": [f"t{k}"], "features": [0.1 * k] * 4} for k in range(20)]
    sizes = []
    for i in range(30_000):  # no pause: several seconds of steady commits
        d = eng.rank(f"u{i % 50}", cands)
        eng.reward(d.decision_id, float(i % 3 == 0))
        now[0] += 1.0
        if i % 2_000 == 1_999:
            sizes.append(os.path.getsize(wal))
    eng.close()
    assert any(b < a for a, b in zip(sizes, sizes[1:], strict=False)), sizes  # truncated
    assert sizes[-1] < max(sizes), sizes
