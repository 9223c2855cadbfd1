"""Decision-log export: Parquet for analysis, DSJson that VW itself learns from."""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine import Engine
from engine.export import to_dsjson, to_parquet

vw = pytest.importorskip("vowpalwabbit")


@pytest.fixture
def logged(tmp_path):
    data = tmp_path / "d"
    t = [0.0]
    eng = Engine(data, policy="lints", item_features=2, clock=lambda: t[0], seed=0)
    rng = np.random.default_rng(0)
    for i in range(300):
        cands = [{"id": f"i{k}", "topics": [f"t{k}"], "features": [float(k == 1), rng.random()]}
                 for k in range(4)]
        d = eng.rank(f"u{i % 10}", cands)
        eng.reward(d.decision_id, float(d.chosen == "i1"))
        t[0] += 1.0
    eng.rank("u1", ["x", "y"])  # pending: no reward yet, not exported
    eng.close()
    return data


def test_parquet_export(logged, tmp_path):
    n = to_parquet(logged, tmp_path / "log.parquet")
    table = pq.read_table(tmp_path / "log.parquet")
    assert n == table.num_rows == 300
    rows = table.to_pylist()
    assert all(abs(sum(r["probabilities"]) - 1) < 1e-9 for r in rows)
    assert all(r["chosen_id"] == r["candidate_ids"][r["chosen"]] for r in rows)
    assert {r["status"] for r in rows} == {"joined"}
    names = json.loads(table.schema.metadata[b"loopwise.feature_names"])
    assert len(rows[0]["phi"][0]) == len(names)


def test_dsjson_export_trains_vw(logged, tmp_path):
    path = tmp_path / "log.dsjson"
    assert to_dsjson(logged, path) == 300
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    first = lines[0]
    assert first["a"][0] == first["_label_Action"] == first["_labelIndex"] + 1
    assert first["p"][0] == pytest.approx(first["_label_probability"])
    assert len(first["c"]["_multi"]) == 4 and first["_label_cost"] in (0.0, -1.0)
    model = vw.Workspace(f"--cb_explore_adf --dsjson -d {path} --quiet --epsilon 0.1")
    model.run_parser()  # VW reads and learns the whole file
    assert model.get_weighted_examples() == 300
    loss = model.get_sum_loss() / model.get_weighted_examples()
    model.finish()
    assert np.isfinite(loss) and -1.0 <= loss <= 0.0
