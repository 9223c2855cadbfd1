"""The ``loopwise`` command line. Each subcommand imports what it needs when it runs.

A mistake the user can fix (a bad flag, a config key, a data directory that is not one or
is held by a running engine) ends the command with one line, ``error: <what> ...``, and
exit status 2; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.errors import LoopwiseError


def _simulate(args: argparse.Namespace) -> int:
    from experiments.simulate import main as simulate_main

    return simulate_main(args)


def _compare(args: argparse.Namespace) -> int:
    from experiments.compare import main as compare_main

    return compare_main(args)


def _ope(args: argparse.Namespace) -> int:
    from experiments.ope.run import main as ope_main

    return ope_main(args)


def _export(args: argparse.Namespace) -> int:
    from engine.errors import ValidationError
    from engine.export import to_dsjson, to_parquet

    if args.include_pending and args.format != "parquet":
        raise ValidationError("--include-pending", "applies to --format parquet only (DSJson "
                              "holds rewarded decisions); leave it out")
    if args.format == "parquet":
        n = to_parquet(args.log, args.out, include_pending=args.include_pending)
    else:
        n = to_dsjson(args.log, args.out)
    print(f"{n} decisions written to {args.out} ({args.format})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from engine.serve.server import main as serve_main

    return serve_main(args)


def _token(args: argparse.Namespace) -> int:
    from engine.serve.tokens import main as token_main

    return token_main(args)


def _quarantine(args: argparse.Namespace) -> int:
    import json

    from engine.store import Store

    store = Store(args.data_dir, create=False)
    try:
        released = 0
        if args.release:
            ids = None if args.release == "all" else _ids(args.release)
            released = store.release_quarantine(ids)
        count, rows = store.quarantined(args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps({"count": count, "released": released, "records": rows}))
        return 0
    for row in rows:
        print(f"#{row['id']}  {row['reason']}\n    {row['record'][:300]}")
    print(f"{count} record(s) in quarantine" + (f"; {released} released" if args.release else ""))
    return 0


def _ids(text: str) -> list[int]:
    from engine.errors import ValidationError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValidationError("--release", "must be 'all' or comma-separated record ids",
                              text) from None


def _bench(args: argparse.Namespace) -> int:
    import runpy

    module = {"engine": "bench_engine", "policies": "bench_policies",
              "simulator": "bench_simulator", "ray": "bench_ray", "neural": "bench_neural",
              "http": "load_http"}[args.what]
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

    ope = sub.add_parser("ope", help="off-policy evaluation of a target policy on logged data")
    from experiments.ope.run import add_arguments as ope_arguments

    ope_arguments(ope)
    ope.set_defaults(func=_ope)

    export = sub.add_parser("export", help="export the decision log to Parquet or VW DSJson")
    export.add_argument("--log", required=True, help="engine data directory")
    export.add_argument("--format", choices=["parquet", "dsjson"], default="parquet")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--include-pending", action="store_true",
                        help="Parquet only: also decisions still waiting for a reward")
    export.set_defaults(func=_export)

    serve = sub.add_parser("serve", help="the HTTP decision service (FastAPI under uvicorn)")
    from engine.serve.server import add_arguments as serve_arguments

    serve_arguments(serve)
    serve.set_defaults(func=_serve)

    token = sub.add_parser("token", help="named HTTP tokens with scopes: add, list, remove")
    from engine.serve.tokens import add_arguments as token_arguments

    token_arguments(token)
    token.set_defaults(func=_token)

    quarantine = sub.add_parser("quarantine", help="records a data directory could not store: "
                                "list them, release them once dealt with")
    quarantine.add_argument("--data-dir", required=True, help="engine data directory")
    quarantine.add_argument("--limit", type=int, default=20, help="newest records shown")
    quarantine.add_argument("--release", default=None, help="'all', or record ids 3,7,...")
    quarantine.add_argument("--json", action="store_true", help="one JSON object")
    quarantine.set_defaults(func=_quarantine)

    bench = sub.add_parser("bench", help="speed figures, side by side with peers")
    bench.add_argument("what", choices=["engine", "policies", "simulator", "ray", "neural",
                                        "http"])
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    bench.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except LoopwiseError as exc:
        return _error(str(exc))
    except SystemExit as exc:  # a check that stops the command with its message
        if isinstance(exc.code, str):
            return _error(exc.code)
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _error(message: str) -> int:
    message = message.strip().splitlines()[0] if message.strip() else "failed"
    print(message if message.startswith("error:") else f"error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
