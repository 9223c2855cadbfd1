"""``loopwise export`` and ``loopwise ope --log`` on the data directory of a running engine: a
read-only view (SQLite ``mode=ro``, one read transaction) that takes no lock, writes nothing,
and says what it covers ("as of the last commit")."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from engine import Engine
from engine.errors import StoreError
from engine.storeview import StoreView
from experiments.cli import main

ROOT = Path(__file__).resolve().parents[1]

#: An engine in a second process that keeps ranking, rewarding and ingesting until told to stop.
RUNNING_ENGINE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from engine import Engine
    data, ready, stop = (Path(p) for p in sys.argv[1:4])
    eng = Engine(data, policy="egreedy", policy_params={"epsilon": 0.3}, item_features=2, seed=0)
    rng = np.random.default_rng(0)
    i = 0
    while not stop.exists() and i < 200000:
        cands = [{"id": f"i{k}", "features": [float(k == 1), rng.random()]} for k in range(4)]
        d = eng.rank(f"u{i % 20}", cands)
        eng.reward(d.decision_id, float(rng.random() < (0.7 if d.chosen == "i1" else 0.2)))
        eng.ingest([{"user_id": f"u{i % 20}", "type": "view", "ts": time.time(),
                     "item_id": d.chosen}])
        i += 1
        if i == 1500:
            ready.write_text("ready")
    eng.close()
    print(i)
""")


def _covered(out: str) -> int:
    """The 'with a reward' count of a view's one-line description."""
    return int(re.search(r"(\d+) with a reward", out).group(1))


def test_export_and_ope_read_a_running_engines_directory(tmp_path, capsys):
    data, ready, stop = tmp_path / "d", tmp_path / "ready", tmp_path / "stop"
    child = subprocess.Popen([sys.executable, "-c", RUNNING_ENGINE, str(data), str(ready),
                              str(stop)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not ready.exists():
            assert child.poll() is None, "the engine process ended early"
            assert time.monotonic() < deadline, "the engine process never got ready"
            time.sleep(0.1)
        # the engine holds its lock: a writer still refuses, readers do not
        with pytest.raises(StoreError, match="in use by another engine"):
            Engine(data, item_features=2)
        assert main(["export", "--data-dir", str(data), "--out", str(tmp_path / "a.pq")]) == 0
        out = capsys.readouterr().out
        assert "as of the last commit" in out and "group-commit journal" in out
        table = pq.read_table(tmp_path / "a.pq").to_pydict()
        n = len(table["decision_id"])
        assert n == _covered(out) > 0  # the rows are the snapshot the line describes
        assert None not in table["reward"] and "pending" not in table["status"]
        assert len(set(table["decision_id"])) == n
        assert main(["ope", "--log", str(data), "--policy", "uniform", "--json",
                     "--estimators", "ips,snips", "--bootstrap", "20"]) == 0
        lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
        notes = lines[0]["notes"]
        assert "as of the last commit" in notes[0] and _covered(notes[0]) >= n
        assert "progressive validation" in notes[1]
        assert lines[0]["n_rounds"] == _covered(notes[0])
        truth = (0.7 + 3 * 0.2) / 4
        assert abs(next(x for x in lines if x["name"] == "SNIPS")["estimate"] - truth) < 0.08
        assert child.poll() is None  # it ran on while both commands read
    finally:
        stop.write_text("stop")
        rest, _ = child.communicate(timeout=120)
    assert child.returncode == 0
    assert int(rest) > n
    # after the engine closed: everything is committed, and the first export was its prefix
    assert main(["export", "--log", str(data), "--out", str(tmp_path / "b.pq")]) == 0
    assert "engine" not in capsys.readouterr().err
    later = pq.read_table(tmp_path / "b.pq").to_pydict()["decision_id"]
    assert later[:n] == table["decision_id"] and len(later) == int(rest)


def test_the_view_writes_nothing_in_a_closed_directory(tmp_path, capsys):
    data = tmp_path / "d"
    eng = Engine(data, item_features=2, seed=0)
    for i in range(5):
        d = eng.rank(f"u{i}", [{"id": "a", "features": [1.0, 0.0]},
                               {"id": "b", "features": [0.0, 1.0]}])
        eng.reward(d.decision_id, 1.0)
    eng.close()
    before = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in data.iterdir()}
    assert main(["export", "--data-dir", str(data), "--format", "dsjson",
                 "--out", str(tmp_path / "x.json")]) == 0
    assert "5 decisions written" in capsys.readouterr().out
    assert main(["ope", "--log", str(data), "--policy", "lints", "--bootstrap", "10",
                 "--estimators", "ips"]) == 0
    assert "lints: trained on the log by progressive validation" in capsys.readouterr().out
    after = {p.name: (p.stat().st_mtime_ns, p.stat().st_size) for p in data.iterdir()}
    assert after == before  # no -wal, -shm or lock file created; nothing written


def test_a_view_refuses_when_an_engine_opens_the_directory_during_its_read(tmp_path):
    data = tmp_path / "d"
    Engine(data, item_features=2).close()
    view = StoreView(data)
    assert view.immutable  # no engine has it open: read as an immutable file
    eng = Engine(data, item_features=2)
    try:
        with pytest.raises(StoreError, match="an engine opened the data directory while it "
                           "was read; run the command again"):
            view.close()
    finally:
        eng.close()
