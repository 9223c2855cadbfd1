"""Group commits in the writer process: same rows as in-process, failures fall back, a killed
engine's writer finishes before the directory reopens, and replay order does not matter."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from filebytes import holding

from engine import Engine, StoreError
from engine.groupcommit import JOURNAL_NAMES, WRITER_LOCK_NAME, wait_for_writer
from engine.journal import Journal
from engine.store import Store

CANDS = [{"id": "a", "topics": ["jazz"], "features": [1.0, 0.0]},
         {"id": "b", "topics": ["rock"], "features": [0.0, 1.0]},
         {"id": "c", "topics": ["folk"], "features": [0.5, 0.5]}]
TABLES = {"decisions": "decision_id", "rewards": "seq", "events": "seq"}


@pytest.fixture(autouse=True)
def _writer_on(monkeypatch):
    """These tests are about the writer process: on, even where LOOPWISE_WRITER=0 is set."""
    monkeypatch.setenv("LOOPWISE_WRITER", "1")


def run_loop(data, n, writer, monkeypatch, flush_every=16):
    """``n`` rank+reward pairs (every third reward skipped, left to expire); the tables."""
    monkeypatch.setenv("LOOPWISE_WRITER", "1" if writer else "0")
    monkeypatch.setattr(Store, "FLUSH_EVERY", flush_every)
    tick = iter(range(10**9))
    eng = Engine(data, policy="lints", item_features=2, seed=3, wait_window=5.0,
                 clock=lambda: float(next(tick)))
    names = {}  # decision ids are random: each is named by its place in the run
    for i in range(n):
        d = eng.rank(f"u{i % 7}", CANDS)
        names[d.decision_id] = f"d{i:04d}"
        if i % 3:
            eng.reward(d.decision_id, float(i % 2))
    proc = eng.store._commits.writer.process
    used = proc is not None
    db = eng.store.db
    def named(v):
        if isinstance(v, str):
            for did, name in names.items():
                v = v.replace(did, name)
        return v

    dump = {t: sorted(tuple(map(named, row)) for row in db.execute(f"SELECT * FROM {t}"))
            for t in TABLES}
    eng.close()
    for name in JOURNAL_NAMES:  # closed: nothing left in either journal
        assert os.path.getsize(data / name) == 0
    assert proc is None or proc.returncode == 0  # the writer exited with the engine
    return used, dump


def test_writer_process_writes_exactly_the_rows_the_engine_thread_writes(tmp_path, monkeypatch):
    used, with_writer = run_loop(tmp_path / "w", 200, True, monkeypatch)
    unused, in_thread = run_loop(tmp_path / "t", 200, False, monkeypatch)
    assert used and not unused
    assert len(with_writer["decisions"]) == 200 and len(with_writer["rewards"]) > 150
    assert with_writer == in_thread


def test_reads_wait_for_the_writer_and_see_every_acknowledged_write(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "FLUSH_EVERY", 8)
    eng = Engine(tmp_path, policy="uniform", item_features=2, clock=lambda: 1.0)
    ids = [eng.rank("u1", CANDS).decision_id for _ in range(2)]  # the writer starts
    assert select.select([eng.store._commits.writer.process.stdout], [], [], 60)[0]  # it is ready
    ids += [eng.rank("u1", CANDS).decision_id for _ in range(6)]  # the 8th hands off
    assert eng.store._commits.writer.busy == 0 and eng.store._commits.active == 1 and not eng.store._commits.n_queued
    ids.append(eng.rank("u1", CANDS).decision_id)  # queued in the other journal
    assert eng.store._commits.active == 1
    rows = eng.store.db.execute("SELECT decision_id FROM decisions").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert eng.store._commits.writer.busy is None and not eng.store._commits.n_queued
    assert not any(j.end for j in eng.store._commits.journals)
    eng.close()


def test_a_killed_writer_is_replaced_by_writing_in_the_engine_thread(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "FLUSH_EVERY", 8)
    eng = Engine(tmp_path, policy="uniform", item_features=2, clock=lambda: 1.0)
    ids = [eng.rank("u1", CANDS).decision_id for _ in range(2)]  # the writer starts
    assert select.select([eng.store._commits.writer.process.stdout], [], [], 60)[0]
    ids += [eng.rank("u1", CANDS).decision_id for _ in range(6)]  # the 8th hands off
    writer = eng.store._commits.writer.process
    assert eng.store._commits.writer.busy is not None
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait(timeout=30)
    with pytest.warns(RuntimeWarning, match="writer process stopped"):
        ids += [eng.rank("u1", CANDS).decision_id for _ in range(20)]
    assert eng.store._commits.writer.process is None and not eng.store._commits.writer.enabled
    ids.append(eng.rank("u1", CANDS).decision_id)
    got = [r[0] for r in eng.store.db.execute("SELECT decision_id FROM decisions")]
    assert sorted(got) == sorted(ids)  # each once: none lost with the writer, none twice
    eng.close()


def test_a_stuck_writer_is_killed_and_its_journal_written_in_the_engine_thread(tmp_path,
                                                                              monkeypatch):
    monkeypatch.setattr(Store, "FLUSH_EVERY", 8)
    monkeypatch.setattr("engine.writer.WRITER_TIMEOUT", 0.5)
    eng = Engine(tmp_path, policy="uniform", item_features=2, clock=lambda: 1.0)
    ids = [eng.rank("u1", CANDS).decision_id for _ in range(2)]  # the writer starts
    assert select.select([eng.store._commits.writer.process.stdout], [], [], 60)[0]
    writer = eng.store._commits.writer.process
    os.kill(writer.pid, signal.SIGSTOP)  # stuck: before or inside its transaction
    ids += [eng.rank("u1", CANDS).decision_id for _ in range(6)]  # the 8th hands off
    assert eng.store._commits.writer.busy is not None
    with pytest.warns(RuntimeWarning, match="no answer in 0.5 s"):
        got = [r[0] for r in eng.store.db.execute("SELECT decision_id FROM decisions")]
    assert writer.returncode == -signal.SIGKILL
    assert sorted(got) == sorted(ids)
    eng.close()


def test_a_writer_that_cannot_start_is_reported_and_the_engine_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "FLUSH_EVERY", 8)
    monkeypatch.setattr("engine.writer.WRITER_SCRIPT", str(tmp_path / "missing.py"))
    eng = Engine(tmp_path / "d", policy="uniform", item_features=2, clock=lambda: 1.0)
    ids = [eng.rank("u1", CANDS).decision_id for _ in range(2)]  # the writer starts
    assert eng.store._commits.writer.process.wait(timeout=60) != 0  # python: no such script
    with pytest.warns(RuntimeWarning, match="did not start"):
        ids += [eng.rank("u1", CANDS).decision_id for _ in range(20)]
    got = [r[0] for r in eng.store.db.execute("SELECT decision_id FROM decisions")]
    assert sorted(got) == sorted(ids)
    eng.close()


LOOP = textwrap.dedent("""
    import itertools, sys
    from engine import Engine
    from engine.store import Store
    Store.FLUSH_EVERY = 32
    tick = itertools.count()
    eng = Engine(sys.argv[1], policy="uniform", item_features=2, seed=0,
                 clock=lambda: float(next(tick)))
    cands = [{"id": "a", "features": [1.0, 0.0]}, {"id": "b", "features": [0.0, 1.0]}]
    out = sys.stdout
    i = 0
    while True:
        d = eng.rank(f"u{i % 5}", cands)
        eng.reward(d.decision_id, float(i % 2))
        w = eng.store._commits.writer.process if eng.store._commits.writer.ready else None  # started: holds its lock
        out.write(f"W {d.decision_id} {i % 2} {w.pid if w else 0}\\n"); out.flush()
        i += 1
""")


def test_a_killed_engines_writer_finishes_before_the_directory_reopens(tmp_path):
    data = tmp_path / "d"
    proc = subprocess.Popen([sys.executable, "-c", LOOP, str(data)], stdout=subprocess.PIPE,
                            text=True, cwd=os.getcwd())
    rewarded, writer_pid, since = {}, 0, 0
    for line in proc.stdout:
        _, did, value, pid = line.split()
        rewarded[did] = float(value)
        writer_pid = int(pid) or writer_pid
        since += bool(writer_pid)
        if since >= 100:  # the writer is up and had several hand-offs (every 32 calls)
            break
    if not writer_pid:
        proc.kill()
        pytest.fail("the writer process never started")
    os.kill(writer_pid, signal.SIGSTOP)  # the writer holds its lock, maybe mid-transaction
    try:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        for line in proc.stdout.read().splitlines():
            _, did, value, _ = line.split()
            rewarded[did] = float(value)
        with pytest.raises(StoreError, match="writer process of an earlier engine"):
            wait_for_writer(data / WRITER_LOCK_NAME, timeout=0.3)
        opened = []
        opener = threading.Thread(target=lambda: opened.append(
            Engine(data, policy="uniform", item_features=2, seed=0, clock=lambda: 1e6)))
        opener.start()
        time.sleep(0.5)
        assert not opened  # waiting for the stopped writer
    finally:
        os.kill(writer_pid, signal.SIGCONT)  # it sees the engine gone and exits
    opener.join(timeout=60)
    eng = opened[0]
    stored = dict(eng.store.db.execute("SELECT decision_id, reward FROM decisions"))
    for did, value in rewarded.items():
        assert stored[did] == value
    n = eng.store.db.execute("SELECT COUNT(*) FROM rewards WHERE status = 'joined'").fetchone()[0]
    assert len(rewarded) <= n <= len(rewarded) + 1  # (the call cut by the kill, maybe)
    # it exits (orphaned: maybe not yet reaped); its lock is released while the interpreter
    # shuts down, a moment before the process ends, so give that moment
    deadline = time.monotonic() + 10
    while _running(writer_pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not _running(writer_pid)
    eng.close()


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_replay_gives_the_same_rows_whichever_journal_is_older(tmp_path, monkeypatch):
    """A crash can leave records in both journals: the one the writer was committing and the
    one calls went on to. They replay as one transaction, so a decision's settlement in
    either journal finds its row."""
    monkeypatch.setenv("LOOPWISE_WRITER", "0")
    eng = Engine(tmp_path / "src", policy="uniform", item_features=2, clock=lambda: 1.0)
    d = eng.rank("u1", CANDS)
    eng.reward(d.decision_id, 1.0)
    decision_call, reward_call = eng.store._commits.journals[0].records()  # (pickled)
    eng.close()
    for order in ((decision_call, reward_call), (reward_call, decision_call)):
        data = tmp_path / f"d{order is decision_call}{len(os.listdir(tmp_path))}"
        Store(data).close()
        for name, call in zip(JOURNAL_NAMES, order, strict=True):
            journal = Journal(data / name)
            journal.append(call)
            journal.close()
        store = Store(data)
        row = store.decision(d.decision_id)
        assert (row["status"], row["reward"]) == ("joined", 1.0)
        assert store.db.execute("SELECT COUNT(*) FROM rewards").fetchone()[0] == 1
        assert store.count_events() == 1  # the reward event
        store.close()


def test_forgetting_while_the_writer_commits_leaves_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setattr(Store, "FLUSH_EVERY", 4)
    secret = "user-5e1f-secret"
    data = tmp_path / "d"
    eng = Engine(data, policy="lints", item_features=2, seed=0, clock=lambda: 1.0)
    eng.rank(secret, CANDS)  # the writer starts
    assert select.select([eng.store._commits.writer.process.stdout], [], [], 60)[0]
    for i in range(6):
        d = eng.rank(secret if i % 2 else "u1", CANDS)
        eng.reward(d.decision_id, 1.0)
    assert eng.store._commits.writer.busy is not None  # a journal was just handed over
    counts = eng.forget(secret)
    assert counts["decisions"] == 4 and counts["rewards"] == 3 and counts["events"] == 3
    eng.rank("u1", CANDS)
    eng.close()
    assert holding(data, secret.encode()) == []
