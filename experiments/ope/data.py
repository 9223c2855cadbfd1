"""Loading logged bandit data: generic columnar files and the engine's own decision log.

Generic format (CSV or Parquet), one row per logged round; column names are options:

==============  ========================================================================
``action``      integer index of the logged action (a column of ``action_dist``)
``position``    0-based slot of the action (optional; default 0)
``reward``      observed reward
``propensity``  logging policy's probability of the logged action at that position
context cols    optional numeric columns used by the reward model of DM/DR estimators
==============  ========================================================================

The target policy comes as an ``action_dist`` array (``.npy``, shape (n_rounds, n_actions,
len_list), or (n_rounds, n_actions) for one slot), row i describing row i of the file.
For example, with ``--context-cols age,score``::

    action,position,reward,propensity,age,score
    3,0,1.0,0.25,31,0.7
    0,1,0.0,0.10,52,0.1
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.ope.base import OPEInputError


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    """Every column of a CSV or Parquet file as a numpy array (nulls become NaN or None)."""
    path = Path(path)
    if not path.is_file():
        raise OPEInputError("data", f"no such file {str(path)!r}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            table = pq.read_table(path)
        elif suffix in (".csv", ".txt"):
            import pyarrow.csv as pacsv

            table = pacsv.read_csv(path)
        else:
            raise OPEInputError("data", f"{path.name!r} must end in .csv or .parquet "
                                f"(got {suffix or 'no suffix'!r})")
    except OPEInputError:
        raise
    except Exception as err:  # pyarrow's errors: not a valid file of that format
        raise OPEInputError("data", f"cannot read {path.name!r} as {suffix[1:]} "
                            f"({type(err).__name__}: {err})") from None
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def load_columnar(path: str | Path, action_col: str = "action", position_col: str | None = None,
                  reward_col: str = "reward", propensity_col: str = "propensity",
                  context_cols: list[str] | None = None) -> dict[str, np.ndarray | None]:
    """Columns by name -> ``reward, action, position, pscore, contexts`` arrays.

    ``contexts`` is (n_rows, len(context_cols)) floats or None. Missing columns, empty
    files, missing values and non-numeric columns raise :class:`OPEInputError` naming the
    column and the flag that set its name.
    """
    table = read_table(path)
    wanted = {"action": ("--action-col", action_col), "reward": ("--reward-col", reward_col),
              "pscore": ("--propensity-col", propensity_col)}
    if position_col:
        wanted["position"] = ("--position-col", position_col)
    for ctx in context_cols or []:
        wanted[f"context {ctx}"] = ("--context-cols", ctx)
    missing = [f"{col!r} (from {flag})" for flag, col in wanted.values() if col not in table]
    if missing:
        raise OPEInputError("data", f"missing column(s) {', '.join(missing)}; the file has "
                            f"{sorted(table)}")
    out: dict[str, np.ndarray | None] = {"position": None, "contexts": None}
    columns = {}
    for key, (flag, col) in wanted.items():
        columns[key] = _numeric_column(table[col], col, flag)
    if len(columns["reward"]) == 0:
        raise OPEInputError("data", f"{Path(path).name!r} has no rows")
    for key in ("action", "reward", "pscore", "position"):
        if key in columns:
            out[key] = columns[key]
    if context_cols:
        out["contexts"] = np.column_stack([columns[f"context {c}"] for c in context_cols])
    return out


def _numeric_column(values: np.ndarray, col: str, flag: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise OPEInputError("data", f"column {col!r} (from {flag}) must be numeric "
                            f"(got values like {values[:3].tolist()!r})") from None
    nan = np.isnan(arr)
    if nan.any():
        raise OPEInputError("data", f"column {col!r} (from {flag}) has {int(nan.sum())} missing "
                            f"value(s), the first in row {int(np.argmax(nan))}")
    return np.asarray(values) if values.dtype.kind in "iu" else arr


def load_action_dist(path: str | Path, n_rows: int | None = None) -> np.ndarray:
    """The target's ``action_dist`` from a ``.npy`` file: (n, n_actions, len_list), or
    (n, n_actions) for a single slot; with ``n_rows``, its rows must match the data's."""
    path = Path(path)
    if not path.is_file():
        raise OPEInputError("target-dist", f"no such file {str(path)!r}")
    try:
        dist = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise OPEInputError("target-dist", f"{path.name!r} is not a numpy .npy array "
                            f"({err})") from None
    if dist.ndim == 2:  # (n, n_actions): a single slot
        dist = dist[:, :, None]
    if dist.ndim != 3:
        raise OPEInputError("target-dist", f"must have shape (n_rounds, n_actions, len_list) or "
                            f"(n_rounds, n_actions) (got {dist.shape})")
    if not np.issubdtype(dist.dtype, np.number):
        raise OPEInputError("target-dist", f"must hold numbers (got dtype {dist.dtype})")
    if n_rows is not None and dist.shape[0] != n_rows:
        raise OPEInputError("target-dist", f"has {dist.shape[0]} rows, the data file has "
                            f"{n_rows}; row i of action_dist must describe row i of the data")
    return dist


def engine_log(view, policy, train: bool = False) -> dict[str, np.ndarray]:
    """The engine's decisions with a reward, read through ``view`` (a
    :class:`~engine.storeview.StoreView`), and ``policy``'s action distribution on them.

    ``policy`` is a :class:`policies.Policy`: with ``train``, trained on the log by
    progressive validation (:func:`~experiments.ope.progressive.progressive`: each round
    decided before it learns it); else its ``act`` runs as it is on the logged features.
    Rounds have different candidate counts: ``action_dist`` is padded to the largest (padding
    gets probability 0), and ``action_context`` (n, K_max, D) holds the logged features for
    the reward model. ``uniform`` says whether every decision was logged uniformly.
    """
    from engine.export import iter_decisions
    from experiments.ope.progressive import progressive

    rows = list(iter_decisions(view))
    if not rows:
        raise OPEInputError("log", f"{str(view.data_dir)!r} holds no decision with a reward yet "
                            "(as of its last commit)")
    k_max = max(len(r["candidate_ids"]) for r in rows)
    dim = rows[0]["phi"].shape[1]
    if policy.n_features != dim:
        raise OPEInputError("policy", f"has n_features={policy.n_features}, the log's features "
                            f"have {dim}")
    n = len(rows)
    phi = np.zeros((n, k_max, dim))
    mask = np.zeros((n, k_max), dtype=bool)
    logged = np.zeros((n, k_max))
    for i, r in enumerate(rows):
        k = len(r["candidate_ids"])
        phi[i, :k] = r["phi"]
        mask[i, :k] = True
        logged[i, :k] = r["probabilities"]
    uniform = bool(np.allclose(logged, mask / mask.sum(axis=1, keepdims=True)))
    action = np.array([r["chosen"] for r in rows])
    reward = np.array([r["reward"] for r in rows], dtype=float)
    pscore = np.array([r["probabilities"][r["chosen"]] for r in rows])
    if train:
        dist = progressive(policy, phi, mask, action, reward, pscore)
    else:
        dist = np.concatenate([policy.act(phi[s:s + 1024], mask[s:s + 1024])
                               for s in range(0, n, 1024)])
    return {"reward": reward, "action": action, "position": np.zeros(n, dtype=np.int64),
            "pscore": pscore, "action_dist": dist[:, :, None], "action_context": phi,
            "variants": np.array([r["variant"] for r in rows]), "uniform": uniform,
            "logged": logged, "mask": mask,
            "user": np.array([r["user_id"] for r in rows], dtype=object),
            "ts": np.array([r["ts"] for r in rows], dtype=float)}


def reference_targets(logged: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """The reference policies Personalizer's offline evaluation shows, as (n, K) action
    distributions: ``logged`` (the logging policy), ``baseline`` (each round's first
    candidate: the application's own choice) and ``random`` (uniform over the candidates).

    Examples
    --------
    >>> t = reference_targets(np.array([[0.2, 0.8, 0.0]]), np.array([[True, True, False]]))
    >>> {k: v.tolist() for k, v in t.items()}
    {'logged': [[0.2, 0.8, 0.0]], 'baseline': [[1.0, 0.0, 0.0]], 'random': [[0.5, 0.5, 0.0]]}
    """
    return {"logged": logged, "baseline": np.eye(mask.shape[1])[np.zeros(len(mask), dtype=int)],
            "random": mask / mask.sum(axis=1, keepdims=True)}


def session_ids(users: np.ndarray, ts: np.ndarray, ends: dict[str, list[float]],
                gap: float) -> np.ndarray:
    """Each decision's session (0, 1, ... in order of first decision), by the engine's rule
    (:mod:`engine.session`): a user's decision continues the session of the user's previous
    one if it came within ``gap`` seconds and no ``session_end`` of the user (``ends``: user
    -> times) lies in between. ``ts`` must be in time order.

    Examples
    --------
    >>> session_ids(np.array(["a", "b", "a", "a", "a"]), np.array([0.0, 1, 2, 3, 50]),
    ...             {"a": [2.0]}, gap=10.0).tolist()
    [0, 1, 0, 2, 3]
    """
    out = np.empty(len(users), dtype=np.int64)
    last: dict[str, tuple[float, int]] = {}  # user -> (last decision ts, its session)
    n = 0
    for i, (u, t) in enumerate(zip(users.tolist(), ts.tolist(), strict=True)):
        prev = last.get(u)
        if prev is None or t - prev[0] > gap or any(prev[0] <= e < t for e in ends.get(u, ())):
            prev, n = (t, n), n + 1
        out[i] = prev[1]
        last[u] = (t, prev[1])
    return out


def engine_sessions(view, policy, gap: float, train: bool = False) -> dict[str, np.ndarray]:
    """:func:`engine_log` with each decision's session (:func:`session_ids`, the
    ``session_end`` events of the view's event log) and ``target_prob``, the target's
    probability of the logged action."""
    log = engine_log(view, policy, train)
    ends: dict[str, list[float]] = {}
    for user, t in view.db.execute("SELECT user_id, ts FROM events WHERE type = 'session_end'"):
        ends.setdefault(user, []).append(float(t))
    log["session"] = session_ids(log["user"], log["ts"], ends, gap)
    log["target_prob"] = log["action_dist"][np.arange(len(log["action"])), log["action"], 0]
    return log
