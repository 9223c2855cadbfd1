"""Export the decision log: Parquet (columnar, for analysis) and VW's DSJson (so VW tooling
can learn from or evaluate on it). Both read a data directory through a read-only
:class:`~engine.storeview.StoreView` (also beside a running engine); neither changes it."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from engine.storeview import StoreView

_COLUMNS = ("decision_id", "user_id", "ts", "variant", "policy", "policy_version",
            "candidate_ids", "probabilities", "chosen", "ranking", "phi", "n_features", "status",
            "reward", "context")


def iter_decisions(store: StoreView, include_pending: bool = False, batch: int = 2000
                   ) -> Iterator[dict]:
    """Decisions in time order as dicts; ``phi`` is (K, D) float32, ``probabilities`` (K,)."""
    where = "" if include_pending else "WHERE status != 'pending'"
    cur = store.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM decisions {where} ORDER BY ts, rowid")
    while rows := cur.fetchmany(batch):
        for row in rows:
            d = dict(zip(_COLUMNS, row, strict=True))
            d["candidate_ids"] = json.loads(d["candidate_ids"])
            d["ranking"] = json.loads(d["ranking"])
            d["probabilities"] = np.frombuffer(d["probabilities"], dtype=np.float64)
            d["phi"] = np.frombuffer(d["phi"], dtype=np.float32).reshape(-1, d["n_features"])
            d["context"] = None if d["context"] is None else json.loads(d["context"])
            yield d


def feature_names(store: StoreView) -> list[str]:
    names = store.get_meta("feature_names")
    return json.loads(names) if names else []


def to_parquet(data_dir: str | os.PathLike, path: str | os.PathLike,
               include_pending: bool = False, view: StoreView | None = None) -> int:
    """Write the decision log to Parquet (one row per decision); return the row count.
    ``view``: read through this open view (else one is opened on ``data_dir`` and closed)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with _viewing(data_dir, view) as store:
        cols: dict[str, list] = {c: [] for c in (*_COLUMNS, "chosen_id") if c != "n_features"}
        for d in iter_decisions(store, include_pending):
            d["chosen_id"] = d["candidate_ids"][d["chosen"]]
            d["probabilities"] = d["probabilities"].tolist()
            d["phi"] = d["phi"].astype(float).tolist()
            d["context"] = None if d["context"] is None else json.dumps(d["context"])
            for c, col in cols.items():
                col.append(d[c])
        table = pa.table(cols).replace_schema_metadata(
            {b"loopwise.feature_names": json.dumps(feature_names(store)).encode()})
        pq.write_table(table, path)
        return table.num_rows


def dsjson_line(d: dict, names: list[str]) -> str:
    """One decision as a VW DSJson line (``cb_explore_adf``).

    ``a`` lists 1-based action indices in ranking order and ``p`` their probabilities in the
    same order; the label fields name the chosen action, its probability and its cost
    (``-reward``). Action features go in ``c._multi`` under namespace ``f``.
    """
    ids = d["candidate_ids"]
    index = {cid: i for i, cid in enumerate(ids)}
    order = [index[cid] for cid in d["ranking"]]
    probs = d["probabilities"]
    phi = d["phi"]
    names = names if len(names) == phi.shape[1] else [f"x{j}" for j in range(phi.shape[1])]
    multi = [{"_id": ids[k], "f": {n: float(v) for n, v in zip(names, phi[k], strict=True) if v != 0}}
             for k in range(len(ids))]
    chosen = int(d["chosen"])
    reward = 0.0 if d["reward"] is None else float(d["reward"])
    ts = datetime.fromtimestamp(d["ts"], tz=timezone.utc)
    line = {
        "_label_cost": -reward,
        "_label_probability": float(probs[chosen]),
        "_label_Action": chosen + 1,
        "_labelIndex": chosen,
        "Timestamp": ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "Version": "1",
        "EventId": d["decision_id"],
        "a": [k + 1 for k in order],
        "c": {"u": {"variant": d["variant"]}, "_multi": multi},
        "p": [float(probs[k]) for k in order],
    }
    return json.dumps(line, separators=(",", ":"))


def to_dsjson(data_dir: str | os.PathLike, path: str | os.PathLike,
              view: StoreView | None = None) -> int:
    """Write decisions that have a reward (joined or default) as DSJson; return the count."""
    n = 0
    with _viewing(data_dir, view) as store:
        names = feature_names(store)
        with open(Path(path), "w", encoding="utf-8") as fh:
            for d in iter_decisions(store):
                fh.write(dsjson_line(d, names) + "\n")
                n += 1
    return n


@contextlib.contextmanager
def _viewing(data_dir: str | os.PathLike, view: StoreView | None) -> Iterator[StoreView]:
    """``view`` as it is, or a view of ``data_dir`` opened for the block and closed after."""
    if view is not None:
        yield view
        return
    with contextlib.closing(StoreView(data_dir)) as opened:
        yield opened
