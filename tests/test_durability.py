"""Durability with a real process: SIGKILL mid-stream loses no acknowledged event."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections import Counter

from engine import Engine

WRITER = textwrap.dedent("""
    import sys
    from engine import Engine
    eng = Engine(sys.argv[1], policy="uniform", snapshot_every=700, clock=lambda: 0.0)
    batch = 0
    while True:
        events = [{"user_id": f"u{(batch * 100 + i) % 37}", "type": "click",
                   "ts": float(batch * 100 + i), "topics": [f"t{i % 5}"],
                   "event_id": f"e{batch}-{i}"} for i in range(100)]
        eng.ingest(events)
        print(batch, flush=True)   # acknowledged: ingest returned
        batch += 1
""")


def all_events(n_batches):
    return [{"user_id": f"u{(b * 100 + i) % 37}", "type": "click", "ts": float(b * 100 + i),
             "topics": [f"t{i % 5}"], "event_id": f"e{b}-{i}"}
            for b in range(n_batches) for i in range(100)]


def test_sigkill_loses_no_acknowledged_event(tmp_path):
    data = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data)], stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 25:  # several snapshots (every 700 events) have been taken by now
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    eng = Engine(data, policy="uniform", snapshot_every=700, clock=lambda: 0.0)
    stored = eng.store.count_events()
    assert stored >= (acked + 1) * 100  # every acknowledged batch survived
    stored_ids = {r[0] for r in eng.store.db.execute("SELECT event_id FROM events")}
    for i in range(100):
        assert f"e{acked}-{i}" in stored_ids
    # the client re-sends everything it may not have had acknowledged (the writer may have
    # run several batches past the last line read before the kill): nothing is doubled
    n_batches = max(acked + 3, 1 + max(int(i[1:].split("-")[0]) for i in stored_ids))
    n_total = n_batches * 100
    result = eng.ingest(all_events(n_batches))
    assert result.accepted + result.duplicates == n_total
    assert eng.store.count_events() == n_total
    per_user = Counter(e["user_id"] for e in all_events(n_batches))
    for user, n in per_user.items():
        assert eng.profile(user)["engagement"]["events"] == n
    eng.close()

    # and the recovered profiles equal those of an uninterrupted run
    ref = Engine(tmp_path / "ref", policy="uniform", clock=lambda: 0.0)
    ref.ingest(all_events(n_batches))
    again = Engine(data, policy="uniform", snapshot_every=700, clock=lambda: 0.0)
    for user in per_user:
        assert again.profile(user, now=1e6) == ref.profile(user, now=1e6)
    again.close()
    ref.close()
