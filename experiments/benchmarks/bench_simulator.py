"""Simulator speed: user-steps/s of the gymnasium env (one user a step) and of the batched
env (B users a step), per preset, with the targets they are held to.
Run: ``python -m experiments.benchmarks.bench_simulator``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simulators import BatchedRecEnv, RecStreamEnv, make_config


def single(preset: str, steps: int) -> float:
    env = RecStreamEnv(preset=preset)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(env.config.n_candidates, size=steps)
    start = time.perf_counter()
    for a in actions.tolist():
        env.step(a)
    return steps / (time.perf_counter() - start)


def batched(preset: str, steps: int, batch: int) -> float:
    env = BatchedRecEnv(make_config(preset), batch_size=batch)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(env.config.n_candidates, size=(steps, batch))
    start = time.perf_counter()
    for a in actions:
        env.step(a)
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=20_000)
    ap.add_argument("--batch", type=int, default=256)
    args = ap.parse_args()
    print(f"{'preset':<12}{'single steps/s':>16}{f'batched B={args.batch} user-steps/s':>32}")
    for preset in ("stationary", "drifting", "fatigue", "cold_start", "long_term"):
        s = single(preset, args.steps)
        b = batched(preset, max(50, args.steps // args.batch * 4), args.batch)
        print(f"{preset:<12}{s:>16,.0f}{b:>32,.0f}")
    print("targets: >= 20,000 single, >= 200,000 batched")


if __name__ == "__main__":
    main()
