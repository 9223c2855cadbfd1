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
len_list)), rows aligned with the file's rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.ope.base import OPEInputError


def read_table(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.exists():
        raise OPEInputError(f"data: no such file {str(path)!r}")
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    elif path.suffix.lower() in (".csv", ".txt"):
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(path)
    else:
        raise OPEInputError(f"data: {path.name} is neither .csv nor .parquet")
    return {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def load_columnar(path: str | Path, action_col: str = "action", position_col: str | None = None,
                  reward_col: str = "reward", propensity_col: str = "propensity",
                  context_cols: list[str] | None = None) -> dict[str, np.ndarray | None]:
    """Columns by name -> ``reward, action, position, pscore, contexts`` arrays."""
    table = read_table(path)
    wanted = {"--action-col": action_col, "--reward-col": reward_col,
              "--propensity-col": propensity_col}
    if position_col:
        wanted["--position-col"] = position_col
    for ctx in context_cols or []:
        wanted[f"--context-cols ({ctx})"] = ctx
    missing = [f"{col!r} (from {flag})" for flag, col in wanted.items() if col not in table]
    if missing:
        raise OPEInputError(f"data: missing column(s) {', '.join(missing)}; the file has "
                            f"{sorted(table)}")
    contexts = None
    if context_cols:
        try:
            contexts = np.column_stack([table[c].astype(float) for c in context_cols])
        except (TypeError, ValueError):
            raise OPEInputError("context columns: must be numeric") from None
    return {"reward": table[reward_col], "action": table[action_col],
            "position": None if not position_col else table[position_col],
            "pscore": table[propensity_col], "contexts": contexts}


def load_action_dist(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise OPEInputError(f"target-dist: no such file {str(path)!r}")
    try:
        dist = np.load(path, allow_pickle=False)
    except ValueError as err:
        raise OPEInputError(f"target-dist: not a numpy .npy array ({err})") from None
    if dist.ndim == 2:  # (n, n_actions): a single slot
        dist = dist[:, :, None]
    return dist


def engine_log(data_dir: str | Path, policy) -> dict[str, np.ndarray]:
    """The engine's decisions with a reward, and ``policy``'s action distribution on them.

    ``policy`` is a :class:`policies.Policy` (its ``act`` runs on the logged features). Rounds
    have different candidate counts: ``action_dist`` is padded to the largest (padding gets
    probability 0), and ``action_context`` (n, K_max, D) holds the logged features for the
    reward model.
    """
    from engine.export import iter_decisions
    from engine.store import Store

    store = Store(data_dir)
    try:
        rows = list(iter_decisions(store))
    finally:
        store.close()
    if not rows:
        raise OPEInputError(f"log: {str(data_dir)!r} holds no decision with a reward yet")
    k_max = max(len(r["candidate_ids"]) for r in rows)
    dim = rows[0]["phi"].shape[1]
    if policy.n_features != dim:
        raise OPEInputError(f"policy: has n_features={policy.n_features}, the log's features "
                            f"have {dim}")
    n = len(rows)
    phi = np.zeros((n, k_max, dim))
    mask = np.zeros((n, k_max), dtype=bool)
    for i, r in enumerate(rows):
        k = len(r["candidate_ids"])
        phi[i, :k] = r["phi"]
        mask[i, :k] = True
    dist = np.concatenate([policy.act(phi[s:s + 1024], mask[s:s + 1024])
                           for s in range(0, n, 1024)])
    action = np.array([r["chosen"] for r in rows])
    return {"reward": np.array([r["reward"] for r in rows], dtype=float), "action": action,
            "position": np.zeros(n, dtype=np.int64),
            "pscore": np.array([r["probabilities"][r["chosen"]] for r in rows]),
            "action_dist": dist[:, :, None], "action_context": phi,
            "variants": np.array([r["variant"] for r in rows])}
