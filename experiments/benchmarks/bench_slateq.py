"""SlateQ training throughput: transitions per second through double-Q Adam steps.

Fills :class:`policies.slateq.SlateQ`'s replay buffer with seeded transitions (each with K
next candidates, so a sample costs one online forward and backward pass on its chosen
features plus online and target forwards on its K next candidates) and times
:meth:`~policies.slateq.SlateQ.train` (the buffer's upload, then ``--steps`` mini-batch
steps with the Polyak update), on the CPU and on CUDA when torch sees one (there the steps
after the third replay one CUDA graph). Needs only numpy and torch::

    python -m experiments.benchmarks.bench_slateq             # CPU, and CUDA when present
    python -m experiments.benchmarks.bench_slateq --quick     # one small size
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from policies.slateq import SlateQ

SIZES = [(64, 256), (256, 1024)]  # (hidden, batch_size)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def measure(device: str, hidden: int, batch: int, n: int, k: int, d: int, steps: int,
            repeats: int = 3) -> dict:
    """Best of ``repeats`` timings of one training of ``steps`` steps on ``n`` transitions."""
    rng = np.random.default_rng(0)
    p = SlateQ(n_features=d, seed=0, gamma=0.9, hidden=hidden, batch_size=batch,
               train_steps=steps, train_every=10**9, buffer_size=n, device=device)
    x = rng.normal(size=(n, d))
    p.learn_transitions(x, np.tanh(x[:, 0]), np.full(n, 0.5), rng.normal(size=(n, k, d)),
                        None, rng.random(n) < 0.1)
    p.train()  # warm-up: CUDA context, kernels, allocator
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        p.train()
        _sync(device)
        times.append(time.perf_counter() - start)
    best = min(times)
    return {"device": device, "hidden": hidden, "batch": batch,
            "samples_s": steps * batch / best, "steps_s": steps / best}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20_000, help="transitions in the replay buffer")
    ap.add_argument("--k", type=int, default=20, help="next candidates per transition")
    ap.add_argument("--d", type=int, default=32, help="features per candidate")
    ap.add_argument("--steps", type=int, default=100, help="Adam steps per training")
    ap.add_argument("--quick", action="store_true", help="only the smallest size")
    args = ap.parse_args(argv)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    print(f"torch {torch.__version__}; CPU threads {torch.get_num_threads()}; GPU {gpu}; "
          f"buffer {args.n:,} transitions, K={args.k} next candidates, D={args.d}; "
          f"{args.steps} Adam steps per training")
    print(f"{'hidden':>7}{'batch':>7}{'device':>7}{'samples/s':>13}{'steps/s':>10}")
    rows = []
    for hidden, batch in SIZES[:1] if args.quick else SIZES:
        for device in devices:
            r = measure(device, hidden, batch, args.n, args.k, args.d, args.steps)
            rows.append(r)
            print(f"{hidden:>7}{batch:>7}{device:>7}{r['samples_s']:>13,.0f}"
                  f"{r['steps_s']:>10,.1f}", flush=True)
    if "cuda" in devices:
        for cpu, cuda in zip(rows[::2], rows[1::2], strict=True):
            print(f"hidden {cpu['hidden']}, batch {cpu['batch']}: GPU/CPU "
                  f"{cuda['samples_s'] / cpu['samples_s']:.1f}x")
    else:
        print("no CUDA device: GPU figures not measured on this machine")


if __name__ == "__main__":
    main()
