"""Two source trees' engines side by side: rank+reward one at a time, in alternation.

Run: ``python -m experiments.benchmarks.ab_trees OLD_TREE NEW_TREE [--rounds 60]`` (each a
checkout of this repository, e.g. a ``git worktree`` at an older commit). Each tree's engine
runs in a process of its own (``PYTHONPATH`` = the tree) on the workload of ``bench_engine``'s
rank+reward figures (20,000 events ingested, 2,000 users, K=20 candidates of 8 features, a
reward of 1 one time in ten); the two processes take turns, 250 pairs each, the first to go
swapping every round, so both see the same machine. Prints each figure's pairs/s and
NEW/OLD speed: the ratio of total times, and the median and quartiles of the per-block
ratios. The worker is a script of its own, so an older tree needs nothing from this one.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

FIGURES = ("uniform:pool", "uniform:fresh", "lints:pool", "lints:fresh")
BLOCK = 250

#: The worker: one engine of the tree on ``PYTHONPATH``; reads a number of pairs per line,
#: answers the seconds its rank and reward calls took.
WORKER = r'''
import gc, json, sys, tempfile, time
import numpy as np
from engine import Engine
EPOCH = 1_700_000_000.0
def make_events(n, n_users, n_items, seed=0):
    rng = np.random.default_rng(seed)
    users, items = rng.integers(n_users, size=n), rng.integers(n_items, size=n)
    kinds = rng.choice(["view", "view", "view", "click", "purchase"], size=n)
    return [{"user_id": f"u{users[i]}", "type": str(kinds[i]), "ts": EPOCH + i,
             "item_id": f"i{items[i]}", "topics": [f"t{items[i] % 20}"],
             "event_id": f"e{i}"} for i in range(n)]
def candidates(rng, k, d):
    return [{"id": f"i{j}", "topics": [f"t{j % 20}"], "features": rng.random(d).round(3).tolist()}
            for j in rng.choice(5000, size=k, replace=False)]
policy, fresh = sys.argv[1], sys.argv[2] == "fresh"
rng = np.random.default_rng(1)
pool = [candidates(rng, 20, 8) for _ in range(50)]
clock = [EPOCH + 20_000]
eng = Engine(tempfile.mkdtemp(), policy=policy, item_features=8, clock=lambda: clock[0])
eng.ingest(make_events(20_000, 2000, 5000))
gc.collect()
i = 0
print("ready", flush=True)
for line in sys.stdin:
    n = int(line)
    texts = [json.dumps(candidates(rng, 20, 8)) for _ in range(n)] if fresh else None
    spent = 0.0
    for j in range(n):
        cands = json.loads(texts[j]) if fresh else pool[i % 50]
        t0 = time.perf_counter()
        d = eng.rank(f"u{i % 2000}", cands)
        eng.reward(d.decision_id, float(i % 10 == 0))
        spent += time.perf_counter() - t0
        clock[0] += 1.0
        i += 1
    print(spent, flush=True)
eng.close()
'''


def _start(tree: str, figure: str) -> subprocess.Popen:
    policy, lists = figure.split(":")
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree))
    proc = subprocess.Popen([sys.executable, "-c", WORKER, policy, lists], cwd=tree, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    if proc.stdout.readline().strip() != "ready":
        raise SystemExit(f"error: the engine of {tree!r} did not start ({figure})")
    return proc


def _run(proc: subprocess.Popen, n: int) -> float:
    proc.stdin.write(f"{n}\n")
    proc.stdin.flush()
    return float(proc.stdout.readline())


def compare(old: str, new: str, figure: str, rounds: int) -> str:
    """One figure's line: both trees' pairs/s and NEW/OLD speed."""
    procs = [_start(old, figure), _start(new, figure)]
    try:
        for p in procs:
            _run(p, 2 * BLOCK)  # warm: caches, compiled kernels, the writer process
        totals, ratios = [0.0, 0.0], []
        for r in range(rounds):
            got = {}
            for w in ((0, 1) if r % 2 == 0 else (1, 0)):
                got[w] = _run(procs[w], BLOCK)
            totals[0] += got[0]
            totals[1] += got[1]
            ratios.append(got[0] / got[1])
    finally:
        for p in procs:
            p.stdin.close()
            p.wait()
    n = rounds * BLOCK
    q1, med, q3 = statistics.quantiles(ratios, n=4)
    return (f"{figure}: old {n / totals[0]:,.0f}/s, new {n / totals[1]:,.0f}/s; new/old "
            f"{totals[0] / totals[1]:.3f}x (blocks: median {med:.3f}, q1 {q1:.3f}, q3 {q3:.3f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old", help="the reference tree")
    ap.add_argument("new", help="the tree measured against it")
    ap.add_argument("--rounds", type=int, default=60, help="blocks of 250 pairs per tree")
    ap.add_argument("--figures", default=",".join(FIGURES),
                    help=f"comma-separated, from {', '.join(FIGURES)}")
    args = ap.parse_args()
    figures = args.figures.split(",")
    for name, tree in (("old", args.old), ("new", args.new)):
        if not os.path.isfile(os.path.join(tree, "engine", "__init__.py")):
            ap.error(f"{name}: {tree!r} is not a Loopwise tree (no engine/__init__.py)")
    for f in figures:
        if f not in FIGURES:
            ap.error(f"--figures: unknown figure {f!r}; allowed: {', '.join(FIGURES)}")
    if args.rounds < 2:
        ap.error("--rounds: must be at least 2")
    for figure in figures:
        print(compare(args.old, args.new, figure, args.rounds), flush=True)


if __name__ == "__main__":
    main()
