"""Long-term value on the ``long_term`` preset: ``slateq`` against ``lints`` and its own
myopic twin (``slateq`` with ``gamma=0``), seed by seed.

Each (policy, seed) runs the engine against :class:`simulators.BatchedSessionEnv` exactly
as ``loopwise simulate --preset long_term`` does (:func:`experiments.loop.run_policy`):
every policy of a seed meets the same simulated users, so per-seed differences are paired.
Per run it records the mean return per finished session (over the whole run, learning
included, and over the sessions that ended in its second half) and the mean session length.
It prints each policy's mean over seeds with a 95% Student-t interval, the paired per-seed
differences ``slateq - other`` with theirs, and the ratio of ``slateq``'s mean return to the
better of the two others'. Runs go to ``--workers`` processes, one torch thread each::

    loopwise bench long_term                                          # seeds 0-4, 20k steps
    python -m experiments.benchmarks.bench_long_term --seeds 100,101  # tuning seeds
    python -m experiments.benchmarks.bench_long_term --quick          # a smoke run
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from experiments.metrics import sample_mean_ci

#: name -> (policy, parameters): the contenders
POLICIES = {"lints": ("lints", {}), "slateq": ("slateq", {}),
            "slateq_gamma0": ("slateq", {"gamma": 0.0})}
#: figures per run: return per session (all, second half), session length (all, second half)
FIGURES = ("return", "return_2nd_half", "length", "length_2nd_half")


def run_one(name: str, seed: int, steps: int, n_users: int, batch_size: int) -> dict:
    """One policy on one seed: its session figures and the wall time."""
    from experiments.loop import run_policy
    from simulators import make_config

    policy, params = POLICIES[name]
    start = time.perf_counter()
    res = run_policy(make_config("long_term", n_users=n_users), policy, params, seed=seed,
                     steps=steps, batch_size=batch_size, sessions=True)
    late = res.episode_steps > steps / 2
    return {"policy": name, "seed": seed, "seconds": time.perf_counter() - start,
            "return": float(res.episode_returns.mean()),
            "return_2nd_half": float(res.episode_returns[late].mean()),
            "length": float(res.episode_lengths.mean()),
            "length_2nd_half": float(res.episode_lengths[late].mean()),
            "sessions": len(res.episode_returns)}


def summarize(runs: list[dict]) -> dict:
    """Per policy, each figure's mean over seeds with its 95% CI; paired differences of
    ``slateq`` against the others; the ratio of ``slateq``'s mean to the better other's.

    Examples
    --------
    >>> runs = [{"policy": p, "seed": s, **{f: v + s for f in FIGURES}}
    ...         for s in range(3) for p, v in (("slateq", 6.0), ("lints", 2.0),
    ...                                        ("slateq_gamma0", 3.0))]
    >>> out = summarize(runs)
    >>> out["diff"]["slateq - lints"]["return"], round(out["ratio"]["return"], 4)
    ([4.0, 4.0, 4.0], 1.75)
    """
    names = [n for n in POLICIES if any(r["policy"] == n for r in runs)]
    seeds = sorted({r["seed"] for r in runs})
    value = {(r["policy"], r["seed"]): r for r in runs}
    table = {n: {f: sample_mean_ci([value[n, s][f] for s in seeds]) for f in FIGURES}
             for n in names}
    diff, ratio = {}, {}
    others = [n for n in names if n != "slateq"]
    if "slateq" in names:
        for other in others:
            diff[f"slateq - {other}"] = {
                f: [value["slateq", s][f] - value[other, s][f] for s in seeds] for f in FIGURES}
        for f in FIGURES:
            best = max((table[o][f][0] for o in others), default=float("nan"))
            ratio[f] = table["slateq"][f][0] / best
    return {"seeds": seeds, "table": table, "diff": diff, "ratio": ratio}


def report(out: dict) -> str:
    """The summary as text: one line per policy, per paired difference, and the ratios."""
    def ci(m: float, lo: float, hi: float) -> str:
        return f"{m:7.3f} [{lo:7.3f}, {hi:7.3f}]"

    lines = [f"seeds {out['seeds']}; mean over seeds [95% CI]",
             f"{'':22s}" + "".join(f"{f:>28s}" for f in FIGURES)]
    for name, figs in out["table"].items():
        lines.append(f"{name:22s}" + "".join(f"{ci(*figs[f]):>28s}" for f in FIGURES))
    for name, figs in out["diff"].items():
        lines.append(f"{name:22s}" + "".join(f"{ci(*sample_mean_ci(figs[f])):>28s}"
                                              for f in FIGURES))
    if out["ratio"]:
        lines.append("slateq / better other  " + "  ".join(
            f"{f} {v:.2f}x" for f, v in out["ratio"].items()))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0,1,2,3,4", help="comma-separated seeds")
    parser.add_argument("--steps", type=int, default=20_000, help="user-steps per run")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument("--policies", default=",".join(POLICIES),
                        help=f"a subset of {list(POLICIES)}")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the runs and summary here")
    parser.add_argument("--quick", action="store_true", help="2 seeds, 2000 steps, 300 users")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    steps, users = args.steps, args.users
    if args.quick:
        seeds, steps, users = seeds[:2], 2000, 300
    names = [n.strip() for n in args.policies.split(",") if n.strip()]
    unknown = [n for n in names if n not in POLICIES]
    if unknown:
        parser.error(f"--policies: unknown {unknown}; choose from {list(POLICIES)}")
    jobs = [(n, s, steps, users, args.batch_size) for s in seeds for n in names]
    start = time.perf_counter()
    runs = []
    from experiments.loop import one_thread

    with ProcessPoolExecutor(max_workers=max(1, args.workers), initializer=one_thread) as pool:
        for f in as_completed([pool.submit(run_one, *job) for job in jobs]):
            r = f.result()
            runs.append(r)
            print(f"{r['policy']:14s} seed {r['seed']:3d}  return {r['return']:.3f}  (2nd half "
                  f"{r['return_2nd_half']:.3f})  length {r['length']:.2f}  "
                  f"({r['seconds']:.0f}s)", flush=True)
    wall = time.perf_counter() - start
    out = summarize(runs)
    print(report(out))
    print(f"{len(jobs)} runs of {steps} steps in {wall:.0f}s with {args.workers} workers")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"runs": runs, **out, "steps": steps, "wall_seconds": wall}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
