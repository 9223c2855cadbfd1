"""``loopwise ope``: estimate a target policy's value from logged decisions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.ope.base import OPEInputError, validate
from experiments.ope.data import engine_log, load_action_dist, load_columnar
from experiments.ope.estimators import default_estimators
from experiments.ope.evaluate import evaluate
from experiments.ope.report import plot, to_json_lines, to_table
from experiments.ope.reward_model import action_features, cross_fit


def run_ope_on_arrays(reward, action, pscore, action_dist, position=None, contexts=None,
                      action_context=None, estimated_rewards=None, n_bootstrap: int = 200,
                      k_folds: int = 3, seed: int = 0):
    """Validate, cross-fit a reward model when none is given, and run every estimator."""
    d = validate(reward, action, pscore, action_dist, position, estimated_rewards)
    if d.estimated_rewards is None:
        try:
            feats = action_features(d.n_rounds, d.action_dist.shape[1], d.action_dist.shape[2],
                                    contexts, action_context)
        except ValueError as err:
            raise OPEInputError(str(err)) from None
        d.estimated_rewards = cross_fit(d.reward, d.action, d.position, feats, k_folds, seed=seed)
    return evaluate(d, default_estimators(), n_bootstrap=n_bootstrap, seed=seed)


def run_ope_on_data(path, target_dist_path, *, action_col="action", position_col=None,
                    reward_col="reward", propensity_col="propensity", context_cols=None,
                    n_bootstrap: int = 200, seed: int = 0):
    cols = load_columnar(path, action_col, position_col, reward_col, propensity_col, context_cols)
    dist = load_action_dist(target_dist_path)
    return run_ope_on_arrays(cols["reward"], cols["action"], cols["pscore"], dist,
                             cols["position"], cols["contexts"], n_bootstrap=n_bootstrap,
                             seed=seed)


def target_policy(spec: str, params: dict, data_dir: str, n_features: int, seed: int):
    """``NAME`` (a fresh policy from the registry) or ``saved:VARIANT`` (the policy the engine
    saved for that variant in the same data directory)."""
    if spec.startswith("saved:"):
        import pickle

        from engine.store import Store

        store = Store(data_dir)
        try:
            row = store.load_policy(spec[6:])
        finally:
            store.close()
        if row is None:
            raise OPEInputError(f"policy: no saved policy for variant {spec[6:]!r} in {data_dir}")
        return pickle.loads(row[2])
    from policies import make

    return make(spec, n_features=n_features, seed=seed, **params)


def run_ope_on_log(data_dir, policy: str, params: dict | None = None, n_bootstrap: int = 200,
                   seed: int = 0):
    import json as _json

    from engine.store import Store

    store = Store(data_dir)
    try:
        n_features = _json.loads(store.get_meta("n_features") or "0")
    finally:
        store.close()
    pol = target_policy(policy, params or {}, data_dir, n_features, seed)
    log = engine_log(data_dir, pol)
    return run_ope_on_arrays(log["reward"], log["action"], log["pscore"], log["action_dist"],
                             log["position"], action_context=log["action_context"],
                             n_bootstrap=n_bootstrap, seed=seed)


def add_arguments(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--log", help="an engine data directory (its decision log)")
    src.add_argument("--data", help="a CSV or Parquet file of logged rounds")
    p.add_argument("--policy", help="with --log: target policy name, or saved:VARIANT")
    p.add_argument("--policy-params", default="{}", help="JSON parameters of the target policy")
    p.add_argument("--target-dist", help="with --data: .npy action_dist (n, n_actions, len_list)")
    p.add_argument("--action-col", default="action")
    p.add_argument("--position-col", default=None)
    p.add_argument("--reward-col", default="reward")
    p.add_argument("--propensity-col", default="propensity")
    p.add_argument("--context-cols", default="", help="comma-separated context columns")
    p.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="one JSON object per estimator")
    p.add_argument("--plot", default=None, help="write a PNG of the estimates here")


def main(args: argparse.Namespace) -> int:
    try:
        if args.log:
            if not args.policy:
                raise OPEInputError("--policy: required with --log")
            params = json.loads(args.policy_params)
            estimates = run_ope_on_log(args.log, args.policy, params, args.bootstrap, args.seed)
        else:
            if not args.target_dist:
                raise OPEInputError("--target-dist: required with --data")
            ctx = [c for c in args.context_cols.split(",") if c] or None
            estimates = run_ope_on_data(args.data, args.target_dist, action_col=args.action_col,
                                        position_col=args.position_col, reward_col=args.reward_col,
                                        propensity_col=args.propensity_col, context_cols=ctx,
                                        n_bootstrap=args.bootstrap, seed=args.seed)
    except (OPEInputError, json.JSONDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(to_json_lines(estimates) if args.json else to_table(estimates))
    if args.plot:
        plot(estimates, Path(args.plot))
        if not args.json:
            print(f"plot written to {args.plot}")
    return 0
