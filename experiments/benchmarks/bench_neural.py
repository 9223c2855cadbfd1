"""Neural policy training throughput: samples/s on the GPU against the CPU.

Trains :class:`policies.neural.NeuralTS` (MLP representation + Bayesian linear head) on a
seeded replay buffer at a few network sizes and prints, per device, the training samples/s
of the Adam steps and of a whole retraining including the head refit over the buffer.
Needs only numpy and torch, so it runs on a bare GPU machine::

    python -m experiments.benchmarks.bench_neural            # CPU, and CUDA when present
    python -m experiments.benchmarks.bench_neural --quick    # one small size
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from policies.neural import NeuralTS

SIZES = [(64, 256), (256, 1024), (1024, 4096)]  # (hidden, batch_size)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(device: str, hidden: int, batch: int, n: int, d: int, steps: int,
            repeats: int = 2) -> dict:
    """Best-of-``repeats`` timings of ``steps`` Adam steps and of the head refit alone."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, d))
    y = np.tanh(x[:, :8].sum(axis=1)) + 0.1 * rng.normal(size=n)

    def build(train_steps: int) -> NeuralTS:
        p = NeuralTS(n_features=d, seed=0, hidden=hidden, batch_size=batch, device=device,
                     train_steps=train_steps, train_every=10**9, buffer_size=n)
        p.update(x, y, np.full(n, 0.5))
        p.train()  # warm-up: CUDA context, kernels, allocator
        return p

    def best(p: NeuralTS) -> float:
        times = []
        for _ in range(repeats):
            _sync(device)
            start = time.perf_counter()
            p.train()
            _sync(device)
            times.append(time.perf_counter() - start)
        return min(times)

    trained = build(steps)
    full = best(trained)
    refit = best(build(1))  # one Adam step + the refit: the fixed cost of a retraining
    sgd = max(full - refit, 1e-9)
    mse = float(np.mean((trained.predict(x[:, None, :])[:, 0] - y) ** 2))
    return {"device": device, "hidden": hidden, "batch": batch,
            "train_samples_s": (steps - 1) * batch / sgd,
            "retrain_samples_s": steps * batch / full, "refit_s": refit, "mse": mse}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="records in the replay buffer")
    ap.add_argument("--d", type=int, default=64, help="features per record")
    ap.add_argument("--steps", type=int, default=200, help="Adam steps per retraining")
    ap.add_argument("--quick", action="store_true", help="only the smallest size")
    args = ap.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}; GPU {gpu}; "
          f"buffer {args.n:,} x {args.d}; {args.steps} Adam steps per retraining")
    print(f"{'hidden':>7}{'batch':>7}{'device':>7}{'train samples/s':>17}"
          f"{'retrain samples/s':>19}{'refit s':>9}{'mse':>8}")
    rows = []
    for hidden, batch in SIZES[:1] if args.quick else SIZES:
        for device in devices:
            r = measure(device, hidden, batch, args.n, args.d, args.steps)
            rows.append(r)
            print(f"{hidden:>7}{batch:>7}{device:>7}{r['train_samples_s']:>17,.0f}"
                  f"{r['retrain_samples_s']:>19,.0f}{r['refit_s']:>9.3f}{r['mse']:>8.4f}",
                  flush=True)
    if "cuda" in devices:
        for cpu, cuda in zip(rows[::2], rows[1::2], strict=True):
            print(f"hidden {cpu['hidden']}, batch {cpu['batch']}: GPU/CPU training "
                  f"{cuda['train_samples_s'] / cpu['train_samples_s']:.1f}x, whole retraining "
                  f"{cuda['retrain_samples_s'] / cpu['retrain_samples_s']:.1f}x")
    else:
        print("no CUDA device: GPU figures not measured on this machine")


if __name__ == "__main__":
    main()
