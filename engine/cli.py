"""The ``loopwise`` command line. Each subcommand imports what it needs when it runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _simulate(args: argparse.Namespace) -> int:
    from experiments.simulate import main as simulate_main

    return simulate_main(args)


def _compare(args: argparse.Namespace) -> int:
    from experiments.compare import main as compare_main

    return compare_main(args)


def _bench(args: argparse.Namespace) -> int:
    import runpy

    module = {"engine": "bench_engine", "policies": "bench_policies",
              "simulator": "bench_simulator", "ray": "bench_ray"}[args.what]
    sys.argv = [module, *args.rest]
    runpy.run_module(f"experiments.benchmarks.{module}", run_name="__main__")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopwise", description="Loopwise: online learning engine for recommender loops.")
    sub = parser.add_subparsers(dest="command", required=True)

    sim = sub.add_parser("simulate", help="run the engine against the user simulator (main job)")
    from experiments.simulate import add_arguments

    add_arguments(sim)
    sim.set_defaults(func=_simulate)

    cmp_ = sub.add_parser("compare", help="A/B comparison of policy variants in simulation")
    from experiments.compare import add_arguments as compare_arguments

    compare_arguments(cmp_)
    cmp_.set_defaults(func=_compare)

    bench = sub.add_parser("bench", help="speed figures, side by side with peers")
    bench.add_argument("what", choices=["engine", "policies", "simulator", "ray"])
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
