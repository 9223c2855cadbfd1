"""Ray backend against the inline backend: ingest events/s and rank decisions/s at 1, 2 and 4
shards, and the batch size at which Ray's per-call overhead stops dominating.

Run: ``python -m experiments.benchmarks.bench_ray``. On a 2-core machine more than two shard
actors cannot run in parallel, so 4 shards measure overhead, not scale-out.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from engine import Engine
from experiments.benchmarks.bench_engine import EPOCH, candidates, make_events


def run(backend: str, shards: int, events: list[dict], batch: int, reqs: list[list[dict]]
        ) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        eng = Engine(d, policy="uniform", item_features=8, shards=shards, backend=backend,
                     snapshot_every=10**9, clock=lambda: EPOCH + len(events), learner="local")
        start = time.perf_counter()
        for i in range(0, len(events), batch):
            eng.ingest(events[i:i + batch])
        ingest = len(events) / (time.perf_counter() - start)
        start = time.perf_counter()
        n = 0
        for r in reqs:
            eng.rank_batch(r)
            n += len(r)
        rank = n / (time.perf_counter() - start)
        eng.close()
    return ingest, rank


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60_000)
    args = ap.parse_args()
    import ray

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rng = np.random.default_rng(0)
    events = make_events(args.events, 3000, 5000)
    pool = [candidates(rng, 20, 8) for _ in range(50)]
    reqs = [[{"user_id": f"u{(j * 256 + i) % 3000}", "candidates": pool[i % 50]}
             for i in range(256)] for j in range(20)]
    print(f"{'backend':<8}{'shards':>7}{'ingest ev/s':>14}{'rank dec/s (B=256)':>20}")
    for shards in (1, 2, 4):
        for backend in ("inline", "ray"):
            ingest, rank = run(backend, shards, events, 1000, reqs)
            print(f"{backend:<8}{shards:>7}{ingest:>14,.0f}{rank:>20,.0f}")
    print("\ningest batch size sweep, 2 shards (Ray / inline throughput):")
    small = events[:20_000]
    for batch in (10, 50, 100, 500, 1000, 5000):
        inline, _ = run("inline", 2, small, batch, reqs[:1])
        on_ray, _ = run("ray", 2, small, batch, reqs[:1])
        print(f"  batch {batch:>5}: inline {inline:>9,.0f} ev/s, ray {on_ray:>9,.0f} ev/s, "
              f"ratio {on_ray / inline:.2f}")
    ray.shutdown()


if __name__ == "__main__":
    main()
