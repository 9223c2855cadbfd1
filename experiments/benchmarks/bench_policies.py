"""Policies side by side with Vowpal Wabbit on the simulator's drifting stream (K = 20).

For each policy: mean reward and regret against the oracle (one decision at a time, learning
after each), decide+learn events/s one at a time, and decisions+updates/s in batches of 256.
VW runs ``cb_explore_adf`` through its Python bindings on the same features (text examples
with integer feature names: the fastest path measured, see ``policies/vw.py``).

Run: ``python -m experiments.benchmarks.bench_policies [--steps 20000]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from policies import make
from simulators import BatchedRecEnv, make_config

LOOPWISE = ("uniform", "egreedy", "linucb", "squarecb", "lints", "neural_ts")
VW = (("vw:squarecb", {}), ("vw:epsilon", {"epsilon": 0.05}))


def features(obs: dict) -> np.ndarray:
    """phi (B, K, D): observable item features plus topic x user-region crosses."""
    items = obs["item_features"].astype(np.float64)  # (B, K, T + 3)
    n_topics = items.shape[2] - 3
    region = obs["user_features"][:, :-1].astype(np.float64)  # (B, R)
    cross = items[:, :, :n_topics, None] * region[:, None, None, :]
    b, k = items.shape[:2]
    return np.concatenate([np.ones((b, k, 1)), items, cross.reshape(b, k, -1)], axis=2)


def one_at_a_time(name: str, params: dict, steps: int, seed: int) -> dict:
    sim = make_config("drifting", shift_step=steps // 2)
    env = BatchedRecEnv(sim, batch_size=1)
    obs = env.reset(seed=seed)
    phi = features(obs)
    policy = make(name, n_features=phi.shape[2], seed=seed, **params)
    rng = np.random.default_rng(seed + 1)
    rewards = np.zeros(steps)
    regrets = np.zeros(steps)
    busy = 0.0
    for t in range(steps):
        t0 = time.perf_counter()
        probs = policy.act(phi)[0]
        a = min(int(np.searchsorted(np.cumsum(probs), rng.random() * probs.sum())), len(probs) - 1)
        busy += time.perf_counter() - t0
        obs, r, info = env.step(np.array([a]))
        t0 = time.perf_counter()
        policy.update(phi[0, a][None], r, probs[a:a + 1])
        busy += time.perf_counter() - t0
        rewards[t], regrets[t] = r[0], info["regret"][0]
        phi = features(obs)
    return {"reward": rewards.mean(), "regret": regrets.mean(),
            "after_shift": rewards[steps // 2:].mean(), "rate": steps / busy}


def batched(name: str, params: dict, n_batches: int, b: int, seed: int) -> float:
    env = BatchedRecEnv(make_config("drifting"), batch_size=b)
    obs = env.reset(seed=seed)
    phis, results = [], []
    for _ in range(n_batches):  # record the stream first: time the policy alone
        phis.append(features(obs))
        obs, r, info = env.step(np.zeros(b, dtype=int))
        results.append(r)
    policy = make(name, n_features=phis[0].shape[2], seed=seed, **params)
    rng = np.random.default_rng(seed)
    rows = np.arange(b)
    start = time.perf_counter()
    for phi, r in zip(phis, results, strict=True):
        probs = policy.act(phi)
        chosen = (probs.cumsum(axis=1) < rng.random((b, 1))).sum(axis=1).clip(max=probs.shape[1] - 1)
        policy.update(phi[rows, chosen], r, probs[rows, chosen])
    return n_batches * b / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--batches", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    import torch

    rows = []
    for name, params in [*((n, {}) for n in LOOPWISE), *VW]:
        one = one_at_a_time(name, params, args.steps, args.seed)
        n_b = args.batches if not name.startswith("vw") else max(4, args.batches // 10)
        rate_b = batched(name, params, n_b, 256, args.seed)
        rows.append((name if not params else f"{name} {params}", one, rate_b))
    vw_loop = next(r[1]["rate"] for r in rows if r[0] == "vw:squarecb")
    vw_reward = next(r[1]["reward"] for r in rows if r[0] == "vw:squarecb")
    print(f"drifting stream, K=20, {args.steps:,} steps, seed {args.seed}, shift at "
          f"{args.steps // 2:,}; torch {torch.__version__}, CUDA: {torch.cuda.is_available()}")
    print(f"{'policy':<30}{'mean reward':>12}{'after shift':>12}{'regret':>9}"
          f"{'1-at-a-time/s':>15}{'x VW':>7}{'batched B=256/s':>17}")
    for name, one, rate_b in rows:
        print(f"{name:<30}{one['reward']:>12.4f}{one['after_shift']:>12.4f}{one['regret']:>9.4f}"
              f"{one['rate']:>15,.0f}{one['rate'] / vw_loop:>7.1f}{rate_b:>17,.0f}")
    best = max(rows, key=lambda r: r[1]["reward"])
    print(f"\nbest Loopwise-or-VW mean reward: {best[0]} {best[1]['reward']:.4f} "
          f"(VW squarecb {vw_reward:.4f})")
    if torch.cuda.is_available():
        gpu_vs_cpu()
    else:
        print("no CUDA device: neural policy GPU-vs-CPU training figures not measured here")


def gpu_vs_cpu(n: int = 100_000, d: int = 64) -> None:
    """Training samples/s of the neural policy's representation on GPU against CPU."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(n, d)), rng.random(n)
    for device in ("cpu", "cuda"):
        p = make("neural_ts", n_features=d, device=device, hidden=256, batch_size=1024,
                 epochs=1, train_every=10**9, buffer_size=n)
        p.update(x, y, np.full(n, 0.5))
        start = time.perf_counter()
        p.train()
        if device == "cuda":
            import torch

            torch.cuda.synchronize()
        print(f"neural_ts training on {device}: {n / (time.perf_counter() - start):,.0f} samples/s")


if __name__ == "__main__":
    main()
