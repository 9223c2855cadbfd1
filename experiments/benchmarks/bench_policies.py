"""Policies side by side with Vowpal Wabbit on two drifting streams (K = 20).

First (``--part linear-drift``) the stream of the forgetting issue,
:class:`LinearDriftStream`: a linear click model in user x item interactions at D = 64 and
D = 256 whose weights flip half way; per policy and for VW squarecb and epsilon in the same
run: mean reward before and after the change, decisions to regain 90% of the pre-change
level, changes detected, and decide+learn per second. Then (``--part simulator``):

Every policy (each linear one as configured by default, with forgetting, and as the
stationary model, ``half_life=None``) runs in this one process on
``simulators.BatchedRecEnv`` with the ``drifting`` preset (slow drift of user tastes plus a
sudden shift halfway), same seed, same features, all policies advancing in turns of 250
steps (each with its own environment) so that a busy machine slows them alike while each
runs warm:

- one at a time (B = 1): mean reward, mean regret against the oracle (the best expected
  reward among the candidates), mean reward after the shift, and decide+learn events/s
  (time in the policy only: act, sampling, update; not the simulator or featurization);
- batched (B = 256): decisions+updates/s and mean reward.

VW runs ``cb_explore_adf`` twice: raw, through VW's fastest Python path we found (text lines
with only the non-zero features, see ``policies.vw.action_lines``; ``Workspace.predict`` on
the list of lines, then ``Workspace.learn`` on the same lines with the label on the chosen
one; the timings of the paths tried are printed first), and through the Loopwise adapter
(``vw:squarecb``), which adds validation and remembers candidate sets. VW has no batch call, so its batched figure loops over rows.
Costs for VW are ``1 - reward`` (rewards lie in [0, 1]).

Run: ``python -m experiments.benchmarks.bench_policies [--steps 20000 --batches 80]``.
"""

from __future__ import annotations

import argparse
import ctypes
import re
import time
from bisect import bisect_right
from itertools import accumulate

import numpy as np

from policies import make
from policies.vw import action_lines, action_template
from simulators import BatchedRecEnv, make_config

LINEAR = ("egreedy", "linucb", "squarecb", "lints")
#: Each linear policy as configured by default (forgetting) and as the stationary model.
LOOPWISE = (("uniform", {}), *((name, {}) for name in LINEAR),
            *((name, {"half_life": None}) for name in LINEAR), ("neural_ts", {}))
D_FEATURES = 1 + 15 + 12 * 4  # constant, item features, topic x region (drifting preset)
VW_RAW = (("squarecb", "--squarecb"), ("epsilon 0.05", "--epsilon 0.05"))
VW_ADAPTER = (("vw:squarecb", {}), ("vw:epsilon", {"epsilon": 0.05}))


def features(obs: dict) -> np.ndarray:
    """phi (B, K, D) float32: a constant, the item features, and topic x user-region crosses."""
    items = obs["item_features"]  # (B, K, T + 3)
    n_topics = items.shape[2] - 3
    region = obs["user_features"][:, :-1]  # (B, R) one-hot
    cross = items[:, :, :n_topics, None] * region[:, None, None, :]
    b, k = items.shape[:2]
    return np.concatenate([np.ones((b, k, 1), np.float32), items, cross.reshape(b, k, -1)],
                          axis=2, dtype=np.float32)


class LoopwiseRunner:
    """A Loopwise policy behind the two calls the loops make."""

    def __init__(self, name: str, params: dict, n_features: int, seed: int):
        self.policy = make(name, n_features=n_features, seed=seed, **params)

    def act(self, phi: np.ndarray) -> np.ndarray:
        return self.policy.act(phi)

    def learn(self, phi: np.ndarray, chosen: np.ndarray, rewards: np.ndarray,
              probs: np.ndarray) -> None:
        if len(chosen) == 1:  # one decision: slices, not fancy indexing (same values)
            c = int(chosen[0])
            self.policy.update(phi[0, c:c + 1], rewards, probs[0, c:c + 1])
            return
        rows = np.arange(len(chosen))
        self.policy.update(phi[rows, chosen], rewards, probs[rows, chosen])


class VWRunner:
    """VW ``cb_explore_adf`` driven directly through pyvw's fastest path (text lines)."""

    def __init__(self, exploration_args: str, n_features: int, seed: int):
        import vowpalwabbit

        self.vw = vowpalwabbit.Workspace(
            f"--cb_explore_adf {exploration_args} --random_seed {seed} --quiet")
        self.template = action_template(n_features)
        self._lines: list[list[str]] = []

    def act(self, phi: np.ndarray) -> np.ndarray:
        template, predict = self.template, self.vw.predict
        self._lines = [action_lines(rows, template) for rows in phi]
        return np.array([predict(lines) for lines in self._lines], dtype=np.float64)

    def learn(self, phi: np.ndarray, chosen: np.ndarray, rewards: np.ndarray,
              probs: np.ndarray) -> None:
        for b, (a, r) in enumerate(zip(chosen.tolist(), rewards.tolist(), strict=True)):
            lines = list(self._lines[b])
            lines[a] = f"0:{1.0 - r:.6g}:{probs[b, a]:.6g} {lines[a]}"
            self.vw.learn(lines)


def sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One candidate per row from its probabilities (as the engine samples): the number of
    cumulative probabilities <= u * total, u ~ U[0, 1), at most K - 1.

    One row reads its cumulative sums as Python floats (the same sequential additions as
    ``cumsum``) and bisects them: the same draw and the same choice as the batch path,
    without its (1, K) array work.
    """
    if len(probs) == 1:
        cum = list(accumulate(probs[0].tolist()))
        u = rng.random() * cum[-1]
        return np.array([min(bisect_right(cum, u), len(cum) - 1)])
    cum = probs.cumsum(axis=1)
    chosen = (cum <= rng.random((len(probs), 1)) * cum[:, -1:]).sum(axis=1)
    return np.minimum(chosen, probs.shape[1] - 1, out=chosen)


def run_side_by_side(factories: list, batch_size: int, n_steps: int, seed: int,
                     shift_step: int, block: int = 250) -> list[dict]:
    """Decide, step, learn for ``n_steps`` calls of B = ``batch_size`` users each.

    Every runner gets its own environment with the same seed, and all advance in blocks of
    ``block`` steps taken in turn (runner 1 steps 0-249, runner 2 steps 0-249, ...), so a
    busy machine slows them alike while each runs warm, as it would alone in a service;
    alternating every single call would bill each library for the cache misses the other
    libraries cause. Results do not depend on ``block``.
    """
    config = make_config("drifting", shift_step=shift_step)
    envs = [BatchedRecEnv(config, batch_size=batch_size) for _ in factories]
    phis = [features(env.reset(seed=seed)) for env in envs]
    runners = [factory(phis[0].shape[2]) for factory in factories]
    rngs = [np.random.default_rng(seed + 1) for _ in factories]
    rewards = np.zeros((len(factories), n_steps, batch_size))
    regrets = np.zeros_like(rewards)

    def step(i, t, chosen):
        obs, r, info = envs[i].step(chosen)
        rewards[i, t], regrets[i, t] = r, info["regret"]
        return r, features(obs)

    busy = alternate_in_blocks(runners, phis, rngs, n_steps, block, step)
    half = n_steps // 2
    return [{"reward": rewards[i].mean(), "regret": regrets[i].mean(),
             "after_shift": rewards[i, half:].mean(), "rate": n_steps * batch_size / busy[i]}
            for i in range(len(factories))]


class LinearDriftStream:
    """The drifting stream of the forgetting issue: a linear click model in user x item
    interactions whose weights flip half way.

    Each decision shows one user K candidates. A user is ``u = (1, u~)`` and an item ``v =
    (1, v~)``, with ``u~`` and ``v~`` standard normal over the square root of their length;
    a candidate's features are ``phi = vec(u v^T)`` (D = d_user * d_item: a constant, the
    item's and the user's features, and every user x item interaction). ``P(click) =
    clip(phi . theta, 0, 1)``, ``theta``'s constant 0.3 and its other weights ``N(0,
    0.06^2)``; at step ``change_at`` every weight but the constant changes sign, for
    everyone: what paid now costs. The reward is the click. Streams built alike show the
    same users, items and uniforms, so policies meet the same world.
    """

    def __init__(self, d_user: int, d_item: int, k: int, change_at: int, seed: int):
        self.rng = np.random.default_rng(seed)
        self.d_user, self.d_item, self.k, self.change_at = d_user, d_item, k, change_at
        theta = self.rng.normal(0.0, 0.06, d_user * d_item)
        theta[0] = 0.3
        self.theta = theta
        self.t = 0
        self.means = np.zeros(k)

    def candidates(self) -> np.ndarray:
        """phi (1, K, D) of the next decision."""
        u = np.ones(self.d_user)
        v = np.ones((self.k, self.d_item))
        u[1:] = self.rng.standard_normal(self.d_user - 1) / np.sqrt(self.d_user - 1)
        v[:, 1:] = self.rng.standard_normal((self.k, self.d_item - 1)) / np.sqrt(self.d_item - 1)
        phi = (u[None, :, None] * v[:, None, :]).reshape(1, self.k, -1)
        self.means = np.clip(phi[0] @ self.theta, 0.0, 1.0)
        return phi

    def step(self, chosen: int) -> tuple[float, float, float]:
        """The click of candidate ``chosen``, its P(click) and the best P(click) on offer;
        the world changes after step ``change_at``."""
        mean = float(self.means[chosen])
        click = float(self.rng.random() < mean)
        self.t += 1
        if self.t == self.change_at:
            self.theta[1:] *= -1.0
        return click, mean, float(self.means.max())


def alternate_in_blocks(runners: list, phis: list, rngs: list, n_steps: int, block: int,
                        step) -> np.ndarray:
    """Run each runner ``n_steps`` decisions in turns of ``block`` steps (runner 1 steps
    0-249, runner 2 steps 0-249, ...): decide on ``phis[i]``, draw with ``rngs[i]``, let
    ``step(i, t, chosen)`` move runner i's world and return ``(reward, next phi)``, learn.
    Returns each runner's seconds in its policy (decide, draw, learn)."""
    busy = np.zeros(len(runners))
    for first in range(0, n_steps, block):
        for i, (runner, rng) in enumerate(zip(runners, rngs, strict=True)):
            for t in range(first, min(first + block, n_steps)):
                phi = phis[i]
                start = time.perf_counter()
                probs = runner.act(phi)
                chosen = sample(probs, rng)
                busy[i] += time.perf_counter() - start
                reward, phis[i] = step(i, t, chosen)
                start = time.perf_counter()
                runner.learn(phi, chosen, reward, probs)
                busy[i] += time.perf_counter() - start
    return busy


def run_linear_drift(factories: list, d_user: int, d_item: int, n_steps: int, seed: int,
                     block: int = 250) -> list[dict]:
    """Every runner against its own :class:`LinearDriftStream` (same seed), one decision at
    a time, in turns of ``block`` steps (as :func:`run_side_by_side`); per runner: clicks,
    P(click) of what it chose, and the seconds spent in the policy (act, draw, learn)."""
    change = n_steps // 2
    streams = [LinearDriftStream(d_user, d_item, 20, change, seed) for _ in factories]
    runners = [factory(d_user * d_item) for factory in factories]
    rngs = [np.random.default_rng(seed + 1) for _ in factories]
    clicks = np.zeros((len(factories), n_steps))
    means = np.zeros_like(clicks)
    best = np.zeros_like(clicks)
    phis = [stream.candidates() for stream in streams]

    def step(i, t, chosen):
        click, mean, top = streams[i].step(int(chosen[0]))
        clicks[i, t], means[i, t], best[i, t] = click, mean, top
        return np.array([click]), streams[i].candidates()

    busy = alternate_in_blocks(runners, phis, rngs, n_steps, block, step)
    return [summarize_drift(clicks[i], means[i], best[i], change, n_steps / busy[i],
                            drift_count(runners[i])) for i in range(len(factories))]


def drift_count(runner) -> int | None:
    policy = getattr(runner, "policy", None)
    return None if policy is None else policy.drift_detections


def summarize_drift(clicks: np.ndarray, means: np.ndarray, best: np.ndarray, change: int,
                    rate: float, detections: int | None, window: int = 500) -> dict:
    """Mean reward (clicks) before and after the change, the pre-change level (mean
    P(click) over the last quarter before it), and the decisions after the change until the
    trailing mean P(click) over ``window`` decisions regains 90% of that level (None:
    never)."""
    level = means[change - change // 2:change].mean()
    trailing = np.convolve(means[change:], np.ones(window) / window, mode="valid")
    hit = np.flatnonzero(trailing >= 0.9 * level)
    return {"before": clicks[:change].mean(), "after": clicks[change:].mean(),
            "level": level, "regain": int(hit[0]) + window if len(hit) else None,
            "oracle_after": best[change:].mean(), "rate": rate, "detections": detections}


def print_linear_drift(n_steps: int, seed: int, threads: str) -> None:
    """The forgetting issue's table: every policy and VW on :class:`LinearDriftStream` at
    D = 64 and D = 256, in one run, and the targets."""
    runners = [(f"{n}" + (" (no forgetting)" if p else ""), n,
                lambda d, n=n, p=p: LoopwiseRunner(n, p, d, seed)) for n, p in LOOPWISE]
    runners += [(f"VW {label}", "vw", lambda d, a=a: VWRunner(a, d, seed)) for label, a in VW_RAW]
    print(f"\nlinear drifting stream (LinearDriftStream): K=20, P(click) linear in user x item "
          f"interactions, every weight but the constant flips sign after {n_steps // 2:,} of "
          f"{n_steps:,} decisions, one at a time; seed {seed}; threads: {threads}")
    for d_side in (8, 16):
        rows = run_linear_drift([f for _, _, f in runners], d_side, d_side, n_steps, seed)
        vw = rows[-len(VW_RAW)]  # VW squarecb
        print(f"\nD = {d_side * d_side}: reward = mean click rate; regain = decisions after "
              "the change until the 500-decision trailing P(click) is back to 90% of the "
              "pre-change level (mean P(click) over the last quarter before it)")
        print(f"{'policy':<28}{'before':>8}{'after':>8}{'regain':>9}{'changes':>9}"
              f"{'decide+learn/s':>16}{'x VW sq':>9}")
        for (label, _, _), r in zip(runners, rows, strict=True):
            regain = "never" if r["regain"] is None else f"{r['regain']:,}"
            found = "-" if r["detections"] is None else str(r["detections"])
            print(f"{label:<28}{r['before']:>8.4f}{r['after']:>8.4f}{regain:>9}{found:>9}"
                  f"{r['rate']:>16,.0f}{r['rate'] / vw['rate']:>9.1f}")
        lints = rows[[label for label, _, _ in runners].index("lints")]
        neural = rows[[label for label, _, _ in runners].index("neural_ts")]
        speed = lints["rate"] / vw["rate"]
        wanted = 1.5 if d_side == 16 else 5.0
        print(f"target: lints decide+learn >= {wanted}x VW squarecb: {speed:.1f}x -> "
              f"{'met' if speed >= wanted else 'MISSED'}")
        if d_side == 16:
            after = lints["after"] / vw["after"]
            print(f"target: lints post-change reward >= 1.10x VW squarecb's: {after:.2f}x "
                  f"-> {'met' if after >= 1.1 else 'MISSED'}")
            ok = lints["regain"] is not None and (vw["regain"] is None
                                                  or lints["regain"] <= vw["regain"] / 2)
            print(f"target: lints regains 90% in at most half VW squarecb's decisions: "
                  f"{lints['regain']} vs {vw['regain']} -> {'met' if ok else 'MISSED'}")
        print(f"target: neural_ts regains 90%: {neural['regain']} -> "
              f"{'met' if neural['regain'] is not None else 'MISSED'}")


def vw_paths(x: np.ndarray, n: int = 300) -> None:
    """Microseconds per decision for the ways of feeding VW from Python, on candidates x."""
    import vowpalwabbit
    from vowpalwabbit import pyvw

    vw = vowpalwabbit.Workspace("--cb_explore_adf --squarecb --quiet --random_seed 0")
    k, d = x.shape
    template = action_template(d)
    rows = x.tolist()

    def dense_template():
        return [template % tuple(row) for row in rows]

    def dense_join():
        return ["|f " + " ".join(f"{j}:{v:.6g}" for j, v in enumerate(row)) for row in rows]

    def parsed():
        ex = vw.parse(action_lines(x, template))
        vw.predict(ex)
        vw.finish_example(ex)

    def objects():
        exs = [pyvw.Example(vw, {"f": [(str(j), v) for j, v in enumerate(row) if v]})
               for row in rows]
        for ex in exs:
            ex.setup_example()

    paths = {"lines: dense, one % template per row": dense_template,
             "lines: dense, f-string per feature": dense_join,
             "lines: non-zero features only (used)": lambda: action_lines(x, template),
             "dense lines + predict(list of lines)": lambda: vw.predict(dense_template()),
             "sparse lines + predict(list of lines) (used)":
                 lambda: vw.predict(action_lines(x, template)),
             "sparse lines + parse + predict + finish_example": parsed,
             "pyvw.Example objects from dicts (no predict)": objects}
    print(f"VW Python paths, K={k}, D={d}, {int((x != 0).sum()) / k:.1f} non-zero features "
          "per candidate (us per decision):")
    for label, fn in paths.items():
        fn()
        start = time.perf_counter()
        for _ in range(n):
            fn()
        print(f"  {label:<50}{(time.perf_counter() - start) / n * 1e6:>8.0f}")


def limit_threads(n: int) -> str:
    """Run numpy's OpenBLAS and torch on ``n`` threads (VW uses one); say what was set.

    On a small shared machine multi-threaded BLAS calls stall behind other processes, so
    the comparison is fairest with every library on one thread.
    """
    import torch

    torch.set_num_threads(n)
    done = [f"torch {n}"]
    with open("/proc/self/maps") as fh:
        libs = sorted(set(re.findall(r"(/\S*openblas\S*\.so\S*)", fh.read())))
    for path in libs:
        lib = ctypes.CDLL(path)
        for name in ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
                     "openblas_set_num_threads64_", "openblas_set_num_threads"):
            if hasattr(lib, name):
                getattr(lib, name)(n)
                done.append(f"OpenBLAS {n}")
                break
    return ", ".join(done)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Policies side by side with VW (drifting stream).")
    ap.add_argument("--steps", type=int, default=20_000, help="one-at-a-time decisions")
    ap.add_argument("--batches", type=int, default=80, help="batched calls of B=256")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="BLAS and torch threads")
    ap.add_argument("--part", choices=("all", "simulator", "linear-drift"), default="all",
                    help="the simulator's drifting stream, the linear stream whose model "
                         "flips half way (forgetting), or both")
    ap.add_argument("--drift-steps", type=int, default=20_000,
                    help="decisions on the linear drifting stream, one at a time")
    args = ap.parse_args(argv)
    import torch

    threads = limit_threads(args.threads)
    if args.part != "simulator":
        warm = make("neural_ts", n_features=2, hidden=4, train_every=10**9)  # lazy imports
        warm.update(np.zeros((8, 2)), np.zeros(8), np.ones(8)).train()
        print_linear_drift(args.drift_steps, args.seed, threads)
        if args.part == "linear-drift":
            return

    env = BatchedRecEnv(make_config("drifting"), batch_size=1)
    vw_paths(features(env.reset(seed=args.seed))[0])
    warm = make("neural_ts", n_features=2, hidden=4, train_every=10**9)  # torch's lazy imports
    warm.update(np.zeros((8, 2)), np.zeros(8), np.ones(8)).train()
    runners = [(f"{n}" + (f" {p}" if p else ""), n,
                lambda d, n=n, p=p: LoopwiseRunner(n, p, d, args.seed)) for n, p in LOOPWISE]
    runners += [(f"VW raw {label}", "vw-raw",
                 lambda d, a=a: VWRunner(a, d, args.seed)) for label, a in VW_RAW]
    runners += [(f"{n} (adapter)" + (f" {p}" if p else ""), n,
                 lambda d, n=n, p=p: LoopwiseRunner(n, p, d, args.seed)) for n, p in VW_ADAPTER]
    factories = [factory for _, _, factory in runners]
    ones = run_side_by_side(factories, 1, args.steps, args.seed, shift_step=args.steps // 2)
    print("  one at a time: done", flush=True)
    manys = run_side_by_side(factories, 256, args.batches, args.seed, block=8,
                             shift_step=args.batches * 256 // 2)
    rows = [(label, kind, one, many)
            for (label, kind, _), one, many in zip(runners, ones, manys, strict=True)]
    vw = next(r for r in rows if r[0] == "VW raw squarecb")
    print(f"\ndrifting stream (simulators.BatchedRecEnv), K=20, D={D_FEATURES}, seed {args.seed}; "
          f"one at a time: {args.steps:,} steps, shift at {args.steps // 2:,}; batched: "
          f"{args.batches} x 256; threads: {threads}; torch {torch.__version__}, "
          f"CUDA {torch.cuda.is_available()}")
    print(f"{'policy':<34}{'reward':>8}{'regret':>8}{'after':>8}{'1-at-a-time/s':>15}"
          f"{'x VW':>7}{'B=256/s':>11}{'B=256 reward':>14}")
    for label, _, one, many in rows:
        print(f"{label:<34}{one['reward']:>8.4f}{one['regret']:>8.4f}{one['after_shift']:>8.4f}"
              f"{one['rate']:>15,.0f}{one['rate'] / vw[2]['rate']:>7.1f}{many['rate']:>11,.0f}"
              f"{many['reward']:>14.4f}")
    ours = [r for r in rows if not r[1].startswith("vw")]
    best = max(ours, key=lambda r: r[2]["reward"])
    print(f"\ntarget: best Loopwise mean reward >= VW squarecb: {best[0]} {best[2]['reward']:.4f} "
          f"vs {vw[2]['reward']:.4f} -> {'met' if best[2]['reward'] >= vw[2]['reward'] else 'MISSED'}")
    for r in ours:  # the targets: each linear policy as configured by default
        if r[1] in LINEAR:
            ratio = r[2]["rate"] / vw[2]["rate"]
            if r[0] != r[1]:  # a non-default configuration: its figures, beside the targets
                print(f"option: {r[0]:<26} one at a time {ratio:4.1f}x VW raw; batched "
                      f"{r[3]['rate']:>9,.0f}/s  (the stationary model: no forgetting)")
                continue
            print(f"target: {r[0]:<26} one at a time >= 5x VW raw: {ratio:4.1f}x "
                  f"-> {'met' if ratio >= 5 else 'MISSED'};  batched >= 100,000/s: "
                  f"{r[3]['rate']:>9,.0f} -> {'met' if r[3]['rate'] >= 100_000 else 'MISSED'}")
    if torch.cuda.is_available():  # the neural policy's training, GPU against CPU
        from experiments.benchmarks import bench_neural

        bench_neural.main(["--quick"])
    else:
        print("no CUDA device: neural policy GPU-vs-CPU training figures not measured here "
              "(python -m experiments.benchmarks.bench_neural measures them)")


if __name__ == "__main__":
    main()
