"""``loopwise ope``: estimate a target policy's value from logged decisions."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from experiments.ope.base import OPEInputError, validate
from experiments.ope.data import engine_log, load_action_dist, load_columnar, reference_targets
from experiments.ope.estimators import Estimator
from experiments.ope.evaluate import evaluate, resolve_estimators
from experiments.ope.report import OPEResult
from experiments.ope.reward_model import check_features, check_k_folds, cross_fit


def run_ope_on_arrays(reward: npt.ArrayLike, action: npt.ArrayLike, pscore: npt.ArrayLike,
                      action_dist: npt.ArrayLike, position: npt.ArrayLike | None = None, *,
                      contexts: npt.ArrayLike | None = None,
                      action_context: npt.ArrayLike | None = None,
                      estimated_rewards: npt.ArrayLike | None = None,
                      estimators: Sequence[Estimator | str] | str | None = None,
                      reward_model=None, k_folds: int = 3, n_bootstrap: int = 200,
                      alpha: float = 0.05, refit_bootstrap: bool = False,
                      seed: int = 0, uniform_logging: bool | None = None) -> OPEResult:
    """Validate, cross-fit a reward model if a model-based estimator needs one, and run the
    estimators with bootstrap intervals.

    Parameters
    ----------
    reward, action, pscore, position, action_dist
        Logged data and target, shapes as in :mod:`experiments.ope.base`.
    contexts
        (n_rounds, d_x) context features for the reward model (optional).
    action_context
        (n_rounds, n_actions, d_a) action-dependent features for the reward model
        (optional; replaces the one-hot action features).
    estimated_rewards
        (n_rounds, n_actions, len_list) predictions to use instead of fitting a model.
    estimators
        Estimator objects or names (see :func:`~experiments.ope.evaluate.make_estimator`);
        default: :func:`~experiments.ope.evaluate.default_estimators`.
    reward_model
        Any object with ``fit``/``predict`` (default ``Ridge()``), cross-fitted over
        ``k_folds`` folds.
    n_bootstrap, alpha, seed
        Bootstrap resamples, interval level ``1 - alpha``, seed of folds and resamples.
    refit_bootstrap
        Refit the cross-fitted reward model on every resample (same folds for a round's
        copies), so DM-family intervals include its error (``n_bootstrap * k_folds`` fits);
        default False holds predictions fixed (fast; DM's interval is then too narrow).
    uniform_logging
        Whether the log was uniform (``None``: every ``pscore`` is ``1 / n_actions``); if
        not, Replay's estimate carries a ``warning`` (unbiased only for uniform logging).

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> action = rng.integers(3, size=3000)                 # uniform logging over 3 actions
    >>> reward = (rng.random(3000) < np.where(action == 2, 0.6, 0.2)).astype(float)
    >>> target = np.zeros((3000, 3, 1)); target[:, 2] = 1.0  # always action 2: value 0.6
    >>> r = run_ope_on_arrays(reward, action, np.full(3000, 1 / 3), target, estimators="ips,dr")
    >>> r["DR"].low < 0.6 < r["DR"].high, r["IPS"].low < 0.6 < r["IPS"].high
    (True, True)
    """
    d = validate(reward, action, pscore, action_dist, position, estimated_rewards)
    chosen = resolve_estimators(estimators)
    needs_model = any(e.needs_model for e in chosen)
    if refit_bootstrap and estimated_rewards is not None:
        raise OPEInputError("refit_bootstrap", "needs a reward model to refit, but "
                            "estimated_rewards were given; pass one or the other")
    refit = None
    if d.estimated_rewards is None and needs_model:
        check_k_folds(k_folds, d.n_rounds)
        contexts, action_context = check_features(d.n_rounds, d.n_actions, contexts,
                                                  action_context)
        folds = np.random.default_rng(seed).permutation(d.n_rounds) % k_folds

        def refit(idx: np.ndarray) -> np.ndarray:
            return cross_fit(d.reward[idx], d.action[idx], d.position[idx], d.n_actions,
                             d.len_list, reward_model=reward_model, k_folds=k_folds,
                             folds=folds[idx],
                             contexts=None if contexts is None else contexts[idx],
                             action_context=None if action_context is None
                             else action_context[idx])

        d.estimated_rewards = refit(np.arange(d.n_rounds))
    result = evaluate(d, chosen, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed,
                      refit=refit if refit_bootstrap else None)
    if uniform_logging is None:
        uniform_logging = bool(np.allclose(d.pscore, 1.0 / d.n_actions))
    for e in result if not uniform_logging else ():
        if e.name == "Replay":
            e.extra["warning"] = REPLAY_WARNING
    return result


#: Attached to Replay's estimate on a log that was not uniformly logged.
REPLAY_WARNING = ("the log was not uniformly logged: Replay is biased (it is unbiased only for "
                  "uniform logging); read IPS/SNIPS/DR instead")


def run_ope_on_data(path: str | Path, target_dist_path: str | Path, *, action_col: str = "action",
                    position_col: str | None = None, reward_col: str = "reward",
                    propensity_col: str = "propensity", context_cols: Sequence[str] | None = None,
                    estimators: Sequence[Estimator | str] | str | None = None,
                    reward_model=None, k_folds: int = 3, n_bootstrap: int = 200,
                    alpha: float = 0.05, refit_bootstrap: bool = False,
                    seed: int = 0) -> OPEResult:
    """Off-policy evaluation of a CSV/Parquet log (:mod:`experiments.ope.data` describes the
    format) against the ``action_dist`` saved at ``target_dist_path`` (``.npy``).

    Column names are options, so logs from other systems load as they are; ``context_cols``
    feed the reward model. Other parameters as in :func:`run_ope_on_arrays`.
    """
    cols = load_columnar(path, action_col, position_col, reward_col, propensity_col,
                         list(context_cols) if context_cols else None)
    dist = load_action_dist(target_dist_path, n_rows=len(cols["reward"]))
    return run_ope_on_arrays(cols["reward"], cols["action"], cols["pscore"], dist,
                             cols["position"], contexts=cols["contexts"], estimators=estimators,
                             reward_model=reward_model, k_folds=k_folds,
                             n_bootstrap=n_bootstrap, alpha=alpha,
                             refit_bootstrap=refit_bootstrap, seed=seed)


def target_policy(spec: str, params: dict, view, n_features: int, seed: int):
    """``NAME`` (a fresh policy from the registry) or ``saved:VARIANT`` (the policy the engine
    saved for that variant, read through ``view``, a :class:`~engine.storeview.StoreView`)."""
    if spec.startswith("saved:"):
        import pickle

        row = view.load_policy(spec[6:])
        if row is None:
            raise OPEInputError("policy", f"no saved policy for variant {spec[6:]!r} in "
                                f"{str(view.data_dir)!r} (as of its last commit)")
        return pickle.loads(row[2])
    from policies import make

    return make(spec, n_features=n_features, seed=seed, **params)


def run_ope_on_log(data_dir: str | Path, policy: str, params: dict | None = None, *,
                   estimators: Sequence[Estimator | str] | str | None = None,
                   k_folds: int = 3, n_bootstrap: int = 200, alpha: float = 0.05,
                   refit_bootstrap: bool = False, seed: int = 0) -> OPEResult:
    """Evaluate ``policy`` on the engine's decision log in ``data_dir``, read through a
    read-only :class:`~engine.storeview.StoreView` (so also beside a running engine, as of
    its last commit); the logged candidate features feed the reward model.

    ``policy`` is ``saved:VARIANT`` (the engine's saved policy, scored as it is) or a
    registry name: a fresh policy trained on the log by progressive validation (each round
    scored before it learns it), never scored untrained. The result's ``notes`` say which,
    and what the view covered.
    """
    from engine.storeview import StoreView

    view = StoreView(data_dir)
    try:
        n_features = json.loads(view.get_meta("n_features") or "0")
        pol = target_policy(policy, params or {}, view, n_features, seed)
        train = not policy.startswith("saved:")
        log = engine_log(view, pol, train=train)
        notes = [view.describe()]
    finally:
        view.close()
    notes.append(f"{policy}: trained on the log by progressive validation (each round scored "
                 "before it learns it)" if train else
                 f"{policy}: the engine's saved policy, scored as saved (not retrained)")
    result = run_ope_on_arrays(log["reward"], log["action"], log["pscore"], log["action_dist"],
                               log["position"], action_context=log["action_context"],
                               estimators=estimators, k_folds=k_folds, n_bootstrap=n_bootstrap,
                               alpha=alpha, refit_bootstrap=refit_bootstrap, seed=seed,
                               uniform_logging=log["uniform"])
    result.notes = notes + [_references(log, n_bootstrap, alpha, seed)]
    return result


def _references(log: dict, n_bootstrap: int, alpha: float, seed: int) -> str:
    """One line: SNIPS of the logged policy, the baseline and random on the same log
    (:func:`~experiments.ope.data.reference_targets`), beside the policy evaluated."""
    parts = []
    for name, dist in reference_targets(log["logged"], log["mask"]).items():
        e = run_ope_on_arrays(log["reward"], log["action"], log["pscore"], dist[:, :, None],
                              estimators="snips", n_bootstrap=n_bootstrap, alpha=alpha,
                              seed=seed)["SNIPS"]
        parts.append(f"{name} {e.estimate:.4f} [{e.low:.4f}, {e.high:.4f}]")
    return f"for reference, SNIPS ({1 - alpha:.0%} interval) of " + "; ".join(parts)


def run_session_ope_on_log(data_dir: str | Path, policy: str, params: dict | None = None, *,
                           gap: float = 1800.0, gamma: float = 1.0, n_bootstrap: int = 200,
                           alpha: float = 0.05, seed: int = 0):
    """Per-session return of ``policy`` on the engine's log in ``data_dir`` (PDIS, WPDIS
    and the logged return; :func:`experiments.ope.sessions.evaluate_sessions`), its
    decisions grouped into sessions by the engine's rule with ``session_gap`` ``gap``, read
    through a read-only view as :func:`run_ope_on_log` reads (a named policy trained on the
    log by progressive validation)."""
    from engine.storeview import StoreView
    from experiments.ope.data import engine_sessions
    from experiments.ope.sessions import evaluate_sessions

    view = StoreView(data_dir)
    try:
        n_features = json.loads(view.get_meta("n_features") or "0")
        pol = target_policy(policy, params or {}, view, n_features, seed)
        log = engine_sessions(view, pol, gap, train=not policy.startswith("saved:"))
    finally:
        view.close()
    order = np.argsort(log["session"], kind="stable")  # sessions contiguous, each in time order
    return evaluate_sessions(log["session"][order], log["reward"][order], log["pscore"][order],
                             log["target_prob"][order], gamma, n_bootstrap=n_bootstrap,
                             alpha=alpha, seed=seed)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``loopwise ope`` flags."""
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", help="an engine data directory (its decision log)")
    src.add_argument("--data", help="a CSV or Parquet file of logged rounds, one per row")
    src.add_argument("--dsjson", help="a DSJson log (VW's, Personalizer's, loopwise export's): "
                     "compares logged, baseline, random and --policy trained on it")
    p.add_argument("--width", type=int, default=64,
                   help="with --dsjson: hashed feature width (engine item_features)")
    p.add_argument("--policy", help="a policy name, trained on the log by progressive "
                   "validation (each round scored before it learns it); with --log also "
                   "saved:VARIANT, the engine's saved policy as it is")
    p.add_argument("--policy-params", default="{}", help="JSON parameters of the target policy")
    p.add_argument("--target-dist",
                   help="with --data: .npy action_dist (n_rows, n_actions[, len_list])")
    p.add_argument("--action-col", default="action", help="integer action index column")
    p.add_argument("--position-col", default=None, help="0-based slot column (optional)")
    p.add_argument("--reward-col", default="reward")
    p.add_argument("--propensity-col", default="propensity",
                   help="logging probability of the logged action at its position")
    p.add_argument("--context-cols", default="",
                   help="comma-separated numeric columns for the reward model")
    p.add_argument("--estimators", default=None,
                   help="comma-separated subset, e.g. ips,snips,dr,switch-dr:5 (default: all)")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    p.add_argument("--alpha", type=float, default=0.05, help="1 - interval level")
    p.add_argument("--k-folds", type=int, default=3, help="cross-fitting folds")
    p.add_argument("--refit-bootstrap", action="store_true",
                   help="refit the reward model on every resample (honest DM intervals; slower)")
    p.add_argument("--sessions", action="store_true",
                   help="with --log: the per-session return (PDIS, WPDIS, logged)")
    p.add_argument("--gamma", type=float, default=1.0, help="with --sessions: the discount")
    p.add_argument("--session-gap", type=float, default=1800.0,
                   help="with --sessions: the engine's session_gap in seconds")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object per estimator")
    p.add_argument("--plot", default=None, help="write a PNG of the estimates here")


#: Flags that only mean something with --data (the columns of a file) or only with --log.
DATA_ONLY = {"target_dist": None, "action_col": "action", "position_col": None,
             "reward_col": "reward", "propensity_col": "propensity", "context_cols": ""}
LOG_ONLY = {"policy": None, "policy_params": "{}", "sessions": False, "gamma": 1.0,
            "session_gap": 1800.0}
#: Flags of the per-decision estimators that --sessions has no use for.
NOT_SESSIONS = {"estimators": None, "k_folds": 3, "refit_bootstrap": False}


def _refuse_ignored(args: argparse.Namespace) -> None:
    """A flag the chosen source would ignore is a mistake: say so instead."""
    ignored, source = (DATA_ONLY, "--log") if args.log else (LOG_ONLY, "--data")
    for name, default in ignored.items():
        if getattr(args, name) != default:
            flag = "--" + name.replace("_", "-")
            raise OPEInputError(flag, f"has no effect with {source}; leave it out")
    if getattr(args, "sessions", False):
        for name, default in NOT_SESSIONS.items():
            if getattr(args, name) != default:
                flag = "--" + name.replace("_", "-")
                raise OPEInputError(flag, "has no effect with --sessions; leave it out")


def main(args: argparse.Namespace) -> int:
    """Run ``loopwise ope``; 0 on success, 2 with a one-line error on bad input."""
    try:
        if getattr(args, "dsjson", None):
            from experiments.ope import dsjson

            print(dsjson.run(args))
            return 0
        _refuse_ignored(args)
        if args.log:
            if not args.policy:
                raise OPEInputError("--policy", "required with --log")
            try:
                params = json.loads(args.policy_params)
            except json.JSONDecodeError as err:
                raise OPEInputError("--policy-params", f"not valid JSON ({err})") from None
            if args.sessions:
                result = run_session_ope_on_log(
                    args.log, args.policy, params, gap=args.session_gap, gamma=args.gamma,
                    n_bootstrap=args.bootstrap, alpha=args.alpha, seed=args.seed)
            else:
                result = run_ope_on_log(
                    args.log, args.policy, params, estimators=args.estimators,
                    k_folds=args.k_folds, n_bootstrap=args.bootstrap, alpha=args.alpha,
                    refit_bootstrap=args.refit_bootstrap, seed=args.seed)
        else:
            if not args.target_dist:
                raise OPEInputError("--target-dist", "required with --data")
            ctx = [c.strip() for c in args.context_cols.split(",") if c.strip()] or None
            result = run_ope_on_data(args.data, args.target_dist, action_col=args.action_col,
                                     position_col=args.position_col, reward_col=args.reward_col,
                                     propensity_col=args.propensity_col, context_cols=ctx,
                                     estimators=args.estimators, k_folds=args.k_folds,
                                     n_bootstrap=args.bootstrap, alpha=args.alpha,
                                     refit_bootstrap=args.refit_bootstrap, seed=args.seed)
    except ValueError as err:  # OPEInputError, and out-of-range parameters
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.to_json_lines() if args.json else result.to_table())
    if args.plot:
        result.plot(Path(args.plot))
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0
