"""Group commit: decisions and rewards survive SIGKILL through the journal, exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import zlib

import pytest

from engine import Engine
from engine.groupcommit import JOURNAL_NAMES
from engine.journal import Journal
from engine.store import Store

WRITER = textwrap.dedent("""
    import itertools, sys
    from engine import Engine
    tick = itertools.count()
    eng = Engine(sys.argv[1], policy="lints", item_features=2, seed=0,
                 clock=lambda: float(next(tick)))
    eng.ingest([{"user_id": f"u{i}", "type": "click", "ts": 0.0, "item_id": "a",
                 "topics": ["jazz"]} for i in range(5)])
    cands = [{"id": "a", "topics": ["jazz"], "features": [1.0, 0.0]},
             {"id": "b", "topics": ["rock"], "features": [0.0, 1.0]}]
    out = sys.stdout  # one write per line: print writes each piece on its own when the
    i = 0             # stream is unbuffered (PYTHONUNBUFFERED), so a kill could cut a line
    while True:
        d = eng.rank(f"u{i % 5}", cands)
        out.write(f"R {d.decision_id}\\n"); out.flush()            # acknowledged: rank returned
        eng.reward(d.decision_id, float(i % 2))
        out.write(f"W {d.decision_id} {i % 2}\\n"); out.flush()    # acknowledged: reward returned
        i += 1
""")


def test_sigkill_keeps_every_acknowledged_decision_and_reward(tmp_path):
    data = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(data)], stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    ranked, rewarded = [], {}

    def read(line):  # each line is one write of under 4 KiB to a pipe: never cut
        kind, did, *rest = line.split()
        if kind == "R":
            ranked.append(did)
        else:
            rewarded[did] = float(rest[0])

    for line in proc.stdout:
        read(line)
        if len(rewarded) >= 700:  # past two group commits (every 256 calls), mid-journal
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    for line in proc.stdout.read().splitlines():  # acknowledged before the kill too
        read(line)

    eng = Engine(data, policy="lints", item_features=2, seed=0, clock=lambda: 1e4)
    db = eng.store.db
    for name in JOURNAL_NAMES:  # replayed into SQLite at open, then zeroed
        with open(data / name, "rb") as fh:
            assert not any(fh.read())
    stored = dict(db.execute("SELECT decision_id, reward FROM decisions").fetchall())
    assert set(ranked) <= stored.keys() and len(stored) <= len(ranked) + 1
    for did, value in rewarded.items():
        assert stored[did] == value
    n_rewards = db.execute("SELECT COUNT(*) FROM rewards WHERE status = 'joined'").fetchone()[0]
    n_events = db.execute("SELECT COUNT(*) FROM events WHERE type = 'reward'").fetchone()[0]
    assert len(rewarded) <= n_rewards == n_events <= len(rewarded) + 1
    # the policy re-learned every stored reward once: one update per joined reward
    assert eng.learners["default"].version == n_rewards
    # a client re-sending acknowledged rewards changes nothing
    again = eng.reward_batch([(did, v) for did, v in list(rewarded.items())[:50]])
    assert {r.status for r in again} == {"duplicate"}
    assert db.execute("SELECT COUNT(*) FROM rewards WHERE status = 'joined'").fetchone()[0] == n_rewards
    profiles = sum(eng.profile(f"u{i}")["engagement"]["by_type"].get("reward", 0) for i in range(5))
    assert profiles == n_events
    eng.close()


def test_torn_tail_is_dropped_and_complete_records_replay(tmp_path):
    j = Journal(tmp_path / "j")
    j.append(b"one")
    j.append(b"two")
    j.close()
    with open(tmp_path / "j", "ab") as fh:  # a crash mid-write: header and half a payload
        fh.write(b"\x10\x00\x00\x00\x00\x00\x00\x00half")
    j = Journal(tmp_path / "j")
    assert list(j.records()) == [b"one", b"two"]
    with open(tmp_path / "j", "r+b") as fh:  # a flipped byte fails the checksum
        fh.seek(9)
        fh.write(b"X")
    assert list(j.records()) == []
    j.close()


def test_journal_grows_past_its_mapping_and_clear_leaves_no_stale_record(tmp_path):
    path = tmp_path / "j"
    j = Journal(path)
    big = [bytes([i % 251 + 1]) * 10_000 for i in range(300)]  # 3 MB: past the first 1 MiB
    for rec in big:
        j.append(rec)
    assert list(j.records()) == big
    j.clear()
    j.append(b"short")  # over the first cleared record; the rest are zeros, never read again
    with open(path, "rb") as fh:  # what a process killed now leaves behind
        data = fh.read()
    assert list(Journal(path).records()) == [b"short"]  # (a second reader, opened as at restart)
    assert not any(data[8 + 5:])  # after the one record: zeros only, 3 MB of old ones gone
    with pytest.raises(ValueError, match="empty"):
        j.append(b"")
    j.close()
    assert list(Journal(path).records()) == [b"short"]


def test_journal_without_posix_fallocate_grows_by_truncate(tmp_path, monkeypatch):
    monkeypatch.delattr(os, "posix_fallocate", raising=False)  # as on macOS
    j = Journal(tmp_path / "j")
    records = [bytes([i + 1]) * 300_000 for i in range(5)]  # past the first 1 MiB
    for rec in records:
        j.append(rec)
    j.close()
    assert list(Journal(tmp_path / "j").records()) == records


def test_a_record_cut_short_in_the_mapping_is_dropped_and_overwritten(tmp_path):
    path = tmp_path / "j"
    j = Journal(path)
    j.append(b"kept")
    start = 8 + 4
    whole = b"x" * 64
    header = (len(whole)).to_bytes(4, "little") + zlib.crc32(whole).to_bytes(4, "little")
    j._map[start:start + 8 + 20] = header + whole[:20]  # killed mid-copy: the rest still zeros
    again = Journal(path)  # reopened after the crash
    assert list(again.records()) == [b"kept"]
    again.append(b"next")  # written where the torn record began
    assert list(again.records()) == [b"kept", b"next"]
    again.close()
    assert os.path.getsize(path) == 2 * 8 + 8  # closed: exactly its records


def test_store_reads_see_queued_writes_and_reopen_replays(tmp_path):
    eng = Engine(tmp_path, policy="uniform", item_features=1, clock=lambda: 5.0)
    d = eng.rank("u1", [{"id": "a", "features": [1.0]}, {"id": "b", "features": [0.0]}])
    assert eng.store._commits.journals[0].end  # not in SQLite yet, only in the journal
    assert eng.store.decision(d.decision_id)["chosen_meta"]  # any read moves it in first
    assert not eng.store._commits.journals[0].end
    eng.reward(d.decision_id, 1.0)
    for journal in eng.store._commits.journals:  # simulate a crash: no flush, no close
        journal.close()
    eng.store._db.close()
    eng.store._stop.set()
    eng.store._lock.close()
    store = Store(tmp_path)
    row = store.decision(d.decision_id)
    assert row["status"] == "joined" and row["reward"] == 1.0
    store.close()


def test_seqs_are_never_reused_after_forgetting_the_newest_rows(tmp_path):
    eng = Engine(tmp_path, policy="uniform", item_features=1, clock=lambda: 5.0)
    eng.ingest([{"user_id": "old", "type": "view", "ts": 1.0},
                {"user_id": "new", "type": "click", "ts": 2.0}])
    d = eng.rank("new", [{"id": "a", "features": [1.0]}])
    eng.reward(d.decision_id, 1.0)
    last_event, last_reward = eng.store._next_seq - 1, eng.store._next_reward_seq - 1
    eng.forget("new")  # deletes the newest event and reward rows
    eng.close()
    eng = Engine(tmp_path, policy="uniform", item_features=1, clock=lambda: 5.0)
    assert (eng.store._next_seq, eng.store._next_reward_seq) == (last_event + 1, last_reward + 1)
    eng.close()


def test_log_keeps_topics_exactly_in_either_encoding(tmp_path):
    from engine.events import validate_events

    store = Store(tmp_path)
    raw = [{"user_id": "u", "type": "view", "ts": 1.0, "topics": ["jazz"]},
           {"user_id": "u", "type": "view", "ts": 2.0, "topics": ["[x", "y z"]},
           {"user_id": "u", "type": "view", "ts": 3.0, "topics": ["a\x1fb"]},
           {"user_id": "u", "type": "view", "ts": 4.0, "topics": ["t"], "tags": ["g"]},
           {"user_id": "u", "type": "view", "ts": 5.0}]
    events = validate_events(raw)
    store.append_events(events, [0] * len(events))
    (back, _), = store.iter_events(0, 0)
    assert [(e.topics, e.tags) for e in back] == [(e.topics, e.tags) for e in events]
    store.close()


def test_event_floats_and_strings_come_back_from_the_log_bit_for_bit(tmp_path):
    import numpy as np

    from engine.events import validate_events

    rng = np.random.default_rng(0)
    stamps = np.concatenate([rng.random(3000) * 2e9, np.exp(rng.uniform(-50, 50, 2000))])
    values = rng.standard_normal(len(stamps)) * 10.0 ** rng.integers(-8, 8, len(stamps))
    raw = [{"user_id": f"ü{i % 7} 😀", "type": "reward", "ts": float(t), "value": float(v),
            "item_id": f'i"{i}\\', "event_id": f"e{i}", "topics": ["ジャズ"]}
           for i, (t, v) in enumerate(zip(stamps, values, strict=True))]
    events = validate_events(raw)
    store = Store(tmp_path)
    for i in range(0, len(events), 1000):
        store.append_events(events[i:i + 1000], [0] * len(events[i:i + 1000]))
    back = [e for batch, _ in store.iter_events(0, 0, batch=10_000) for e in batch]
    store.close()
    assert back == events



def test_full_durability_syncs_the_journal_too(tmp_path):
    eng = Engine(tmp_path, policy="uniform", item_features=1, clock=lambda: 5.0,
                 synchronous="FULL")
    assert all(j.fsync for j in eng.store._commits.journals)
    d = eng.rank("u1", [{"id": "a", "features": [1.0]}, {"id": "b", "features": [0.0]}])
    assert eng.reward(d.decision_id, 1.0).status == "joined"
    eng.close()
    again = Engine(tmp_path, policy="uniform", item_features=1, clock=lambda: 5.0,
                   synchronous="FULL")
    assert again.store.decision(d.decision_id)["status"] == "joined"
    again.close()
