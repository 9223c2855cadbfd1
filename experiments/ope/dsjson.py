"""Offline evaluation of DSJson logs (VW's ``cb_adf`` format, which Personalizer exports and
``loopwise export --format dsjson`` writes), as Personalizer's offline evaluations did.

Each line is one event: ``c`` holds the shared (context) features and ``c._multi`` one
feature object per action; ``_labelIndex`` (0-based; else ``_label_Action``, 1-based) is
the action shown, ``_label_probability`` its logging probability, ``_label_cost`` minus its
reward; ``a`` and ``p`` the logging distribution (1-based action indices and their
probabilities). Events marked ``_skipLearn`` (deferred, never activated) are left out.

:func:`compare` scores, on the same rounds and with the same estimators and intervals:
``logged`` (the logging policy itself), ``baseline`` (always the first action, the
application's own choice in apprentice terms), ``random`` (uniform) and any Loopwise policy
trained on the log counterfactually by progressive validation: round ``i`` is scored with
the policy as it was before learning round ``i``, so the estimate is of a policy that
learned online from this traffic, never of one that saw the round it is scored on.
Features are hashed from the JSON as the Personalizer routes do (:mod:`engine.jsonfeatures`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.jsonfeatures import JsonFeatures
from experiments.ope.base import OPEInputError
from experiments.ope.data import reference_targets
from experiments.ope.progressive import progressive
from experiments.ope.report import OPEResult
from experiments.ope.run import run_ope_on_arrays


@dataclass
class DSJsonLog:
    """Rounds of a DSJson log, padded to the largest action set.

    ``reward`` (n,), ``action`` (n,) the shown action's index, ``pscore`` (n,) its logging
    probability, ``logged`` (n, K) the logging distribution, ``mask`` (n, K) where actions
    exist, ``phi`` (n, K, width + 1) hashed features with a bias column first.

    Examples
    --------
    >>> line = {"_label_cost": -1, "_label_probability": 0.7, "_labelIndex": 1,
    ...         "a": [2, 1], "p": [0.7, 0.3],
    ...         "c": {"user": {"tier": "gold"}, "_multi": [{"g": "a"}, {"g": "b"}]}}
    >>> log = parse_lines([json.dumps(line)], width=8)
    >>> log.reward.tolist(), log.action.tolist(), log.logged.tolist(), log.phi.shape
    ([1.0], [1], [[0.3, 0.7]], (1, 2, 9))
    """

    reward: np.ndarray
    action: np.ndarray
    pscore: np.ndarray
    logged: np.ndarray
    mask: np.ndarray
    phi: np.ndarray
    skipped: int = 0


def read_dsjson(path: str | Path, width: int = 64) -> DSJsonLog:
    """The rounds of the DSJson file at ``path`` (see :func:`parse_lines`)."""
    try:
        with open(path, encoding="utf-8") as fh:
            return parse_lines(fh, width)
    except OSError as err:
        raise OPEInputError("--dsjson", f"cannot read {str(path)!r} ({err.strerror})") from None


def parse_lines(lines, width: int = 64) -> DSJsonLog:
    """Rounds from DSJson lines (blank lines ignored); errors name the line and field."""
    features = JsonFeatures(width)
    rows, skipped = [], 0
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            event = json.loads(text)
        except json.JSONDecodeError as err:
            raise OPEInputError(f"line {n}", f"is not valid JSON ({err.msg})") from None
        if not isinstance(event, dict):
            raise OPEInputError(f"line {n}", "must be a JSON object")
        if event.get("_skipLearn"):
            skipped += 1
            continue
        rows.append(_round(event, f"line {n}", features))
    if not rows:
        raise OPEInputError("--dsjson", "holds no events to evaluate")
    k_max = max(len(r[3]) for r in rows)
    phi = np.zeros((len(rows), k_max, width + 1))
    logged = np.zeros((len(rows), k_max))
    mask = np.zeros((len(rows), k_max), dtype=bool)
    for i, (_, _, _, dist, vectors) in enumerate(rows):
        k = len(dist)
        phi[i, :k, 0] = 1.0
        phi[i, :k, 1:] = vectors
        logged[i, :k] = dist
        mask[i, :k] = True
    return DSJsonLog(np.array([r[0] for r in rows]), np.array([r[1] for r in rows]),
                     np.array([r[2] for r in rows]), logged, mask, phi, skipped)


def _round(event: dict, where: str, features: JsonFeatures) -> tuple:
    """(reward, action, pscore, logging distribution (K,), hashed features (K, width))."""
    context = event.get("c")
    if not isinstance(context, dict) or not isinstance(context.get("_multi"), list) \
            or not context["_multi"]:
        raise OPEInputError(f"{where}.c._multi", "must be a non-empty list of action objects")
    multi = context["_multi"]
    k = len(multi)
    action = event.get("_labelIndex")
    if action is None and isinstance(event.get("_label_Action"), int):
        action = event["_label_Action"] - 1
    if isinstance(action, bool) or not isinstance(action, int) or not 0 <= action < k:
        raise OPEInputError(f"{where}._labelIndex", f"must be an action index below {k}",
                            action)
    cost, prob = event.get("_label_cost"), event.get("_label_probability")
    if isinstance(cost, bool) or not isinstance(cost, (int, float)) or not np.isfinite(cost):
        raise OPEInputError(f"{where}._label_cost", "must be a finite number", cost)
    if isinstance(prob, bool) or not isinstance(prob, (int, float)) or not 0 < prob <= 1:
        raise OPEInputError(f"{where}._label_probability", "must lie in (0, 1]", prob)
    dist = np.zeros(k)
    a, p = event.get("a"), event.get("p")
    if isinstance(a, list) and isinstance(p, list) and len(a) == len(p) == k:
        for idx, q in zip(a, p, strict=True):
            if isinstance(idx, bool) or not isinstance(idx, int) or not 1 <= idx <= k \
                    or not isinstance(q, (int, float)) or not 0 <= q <= 1:
                raise OPEInputError(f"{where}.a", "must list 1-based action indices with "
                                    "probabilities in p", [a, p])
            dist[idx - 1] = q
    else:  # no full distribution: what is known, the shown action's probability
        dist[:] = (1 - prob) / (k - 1) if k > 1 else 0.0
        dist[action] = prob
    shared = [{key: v for key, v in context.items() if not key.startswith("_")}]
    actions = [[{key: v for key, v in obj.items() if not key.startswith("_")}]
               if isinstance(obj, dict) else obj for obj in multi]
    try:
        vectors = features.vectors(shared, actions, f"{where}.c",
                                   [f"{where}.c._multi[{j}]" for j in range(k)])
    except ValueError as err:  # a ValidationError naming the feature
        raise OPEInputError(*str(err).split(": ", 1)) from None
    return -float(cost), action, float(prob), dist, vectors


def compare(log: DSJsonLog, policies: dict | None = None, *, estimators="ips,snips",
            n_bootstrap: int = 200, alpha: float = 0.05, seed: int = 0) -> dict[str, OPEResult]:
    """``{name: OPEResult}`` of logged, baseline, random and each of ``policies`` (``{name:
    fresh Loopwise policy}``, trained by
    :func:`~experiments.ope.progressive.progressive`)."""
    k = log.mask.sum(axis=1, keepdims=True)
    targets = reference_targets(log.logged, log.mask)
    for name, policy in (policies or {}).items():
        targets[name] = progressive(policy, log.phi, log.mask, log.action, log.reward,
                                    log.pscore)
    uniform = bool(np.allclose(log.logged, log.mask / k))
    return {name: run_ope_on_arrays(log.reward, log.action, log.pscore, dist[:, :, None],
                                    estimators=estimators, n_bootstrap=n_bootstrap,
                                    alpha=alpha, seed=seed, uniform_logging=uniform)
            for name, dist in targets.items()}


def render(results: dict[str, OPEResult], as_json: bool = False, skipped: int = 0) -> str:
    """The comparison as tables (or JSON lines with a ``policy`` key)."""
    if as_json:
        return "\n".join(json.dumps({"policy": name, **json.loads(line)})
                         for name, r in results.items() for line in r.to_json_lines().split("\n"))
    out = [f"{skipped} deferred events never activated (_skipLearn) left out"] if skipped else []
    trained = [name for name in results if name.endswith(" (progressive)")]
    out += [f"{name[:-14]}: a fresh policy trained on the log by progressive validation (each "
            "round scored before it learns it)" for name in trained]
    for name, r in results.items():
        out += [f"== {name}", r.to_table(), ""]
    return "\n".join(out).rstrip()


def run(args) -> str:
    """``loopwise ope --dsjson PATH [--policy NAME]``: the comparison's text."""
    for name, default in (("target_dist", None), ("action_col", "action"),
                          ("position_col", None), ("reward_col", "reward"),
                          ("propensity_col", "propensity"), ("context_cols", ""),
                          ("plot", None)):
        if getattr(args, name) != default:
            raise OPEInputError("--" + name.replace("_", "-"), "has no effect with --dsjson; "
                                "leave it out")
    if isinstance(args.width, bool) or not isinstance(args.width, int) or args.width < 1:
        raise OPEInputError("--width", "must be an integer >= 1", args.width)
    log = read_dsjson(args.dsjson, args.width)
    policies = {}
    if args.policy:
        from policies import make

        try:
            params = json.loads(args.policy_params)
        except json.JSONDecodeError as err:
            raise OPEInputError("--policy-params", f"not valid JSON ({err})") from None
        policies[f"{args.policy} (progressive)"] = make(
            args.policy, n_features=log.phi.shape[2], seed=args.seed, **params)
    results = compare(log, policies, estimators=args.estimators or "ips,snips",
                      n_bootstrap=args.bootstrap, alpha=args.alpha, seed=args.seed)
    return render(results, args.json, log.skipped)
