"""The ``loopwise`` command line.

A subcommand with a module of its own (simulate, compare, ope, report, rekey, serve, token) takes its flags
from that module's ``add_arguments(parser)`` and runs its ``main(args)``; the small ones
(export, pseudonym-key, quarantine, bench) live here and import what they need when they run.

A mistake the user can fix (a bad flag, a config key, a data directory that is not one or
is held by a running engine) ends the command with one line, ``error: <what> ...``, and
exit status 2; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from engine.errors import LoopwiseError

#: ``loopwise bench NAME`` runs ``experiments.benchmarks.<module>``.
BENCHMARKS = {"engine": "bench_engine", "policies": "bench_policies",
              "simulator": "bench_simulator", "ray": "bench_ray", "neural": "bench_neural",
              "slateq": "bench_slateq", "long_term": "bench_long_term", "http": "load_http"}


def _export(args: argparse.Namespace) -> int:
    """``export``: through a read-only view, so it also runs beside a running engine."""
    from engine.errors import ValidationError
    from engine.export import to_dsjson, to_parquet
    from engine.storeview import StoreView

    if args.include_pending and args.format != "parquet":
        raise ValidationError("--include-pending", "applies to --format parquet only (DSJson "
                              "holds rewarded decisions); leave it out")
    view = StoreView(args.log)
    try:
        covers = view.describe()
        if args.format == "parquet":
            n = to_parquet(args.log, args.out, include_pending=args.include_pending, view=view)
        else:
            n = to_dsjson(args.log, args.out, view=view)
    finally:
        view.close()
    print(covers)
    print(f"{n} decisions written to {args.out} ({args.format})")
    return 0


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


def _rollout(args: argparse.Namespace) -> int:
    """``rollout status``: a data directory's rollout as its engine last saved it (read
    only; a directory that is not there, or holds no rollout, is an error)."""
    import json
    from pathlib import Path

    from engine.errors import ValidationError
    from engine.rollout import read_state

    if not Path(args.data_dir).is_dir():
        raise ValidationError("--data-dir", "is not a directory (readers never create one)",
                              args.data_dir)
    state = read_state(args.data_dir)
    if state is None:
        raise ValidationError("--data-dir", "holds no rollout (set engine.rollout in "
                              "serve.yaml and serve it)", args.data_dir)
    if args.json:
        print(json.dumps(state))
        return 0
    settings = state["settings"]
    steps = settings["steps"]
    share = steps[state["stage"] - 1] if state["state"] in ("serving", "promoted") else 0.0
    print(f"rollout of {settings['challenger']['policy']}: {state['state']}, serving "
          f"{share:.0%} of users (steps {steps}, margin {settings['margin']:g}, "
          f"alpha {settings['alpha']:g})")
    for h in state["history"]:
        print(f"  {h['event']:<9} -> {h['share']:.0%}  {h['reason']}")
    return 0


def _ids(text: str) -> list[int]:
    from engine.errors import ValidationError

    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValidationError("--release", "must be 'all' or comma-separated record ids",
                              text) from None


def _new_key(args: argparse.Namespace) -> int:
    from experiments.rekey import new_key_main

    return new_key_main(args)


def _bench(args: argparse.Namespace) -> int:
    import runpy

    module = BENCHMARKS[args.what]
    sys.argv = [module, *args.rest]
    runpy.run_module(f"experiments.benchmarks.{module}", run_name="__main__")
    return 0


def _module_command(sub: argparse._SubParsersAction, name: str, module: str,
                    help_text: str) -> None:
    """Subcommand ``name`` whose ``module`` defines ``add_arguments(parser)`` and ``main(args)``."""
    mod = importlib.import_module(module)
    parser = sub.add_parser(name, help=help_text)
    mod.add_arguments(parser)
    parser.set_defaults(func=mod.main)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loopwise", description="Loopwise: online learning engine for recommender loops.")
    sub = parser.add_subparsers(dest="command", required=True)

    _module_command(sub, "simulate", "experiments.simulate",
                    "run the engine against the user simulator (main job)")
    _module_command(sub, "compare", "experiments.compare",
                    "A/B comparison of policy variants in simulation")
    _module_command(sub, "ope", "experiments.ope.run",
                    "off-policy evaluation of a target policy on logged data")
    _module_command(sub, "report", "experiments.dp_report",
                    "differentially private aggregates of a data directory, within its budget")

    export = sub.add_parser("export", help="export the decision log to Parquet or VW DSJson")
    export.add_argument("--data-dir", "--log", dest="log", required=True,
                        help="engine data directory (may be in use by a running engine: "
                        "read as of its last commit)")
    export.add_argument("--format", choices=["parquet", "dsjson"], default="parquet")
    export.add_argument("--out", required=True, help="output file")
    export.add_argument("--include-pending", action="store_true",
                        help="Parquet only: also decisions still waiting for a reward")
    export.set_defaults(func=_export)

    _module_command(sub, "rekey", "experiments.rekey",
                    "re-key a pseudonymous data directory (the application's ids on input)")
    key = sub.add_parser("pseudonym-key", help="write a new random pseudonym key file")
    key.add_argument("--out", required=True, help="key file (outside any data directory)")
    key.set_defaults(func=_new_key)

    _module_command(sub, "serve", "experiments.serve",
                    "the HTTP decision service (FastAPI under uvicorn)")
    _module_command(sub, "token", "experiments.tokens",
                    "named HTTP tokens with scopes: add, list, remove")

    quarantine = sub.add_parser("quarantine", help="records a data directory could not store: "
                                "list them, release them once dealt with")
    quarantine.add_argument("--data-dir", required=True, help="engine data directory")
    quarantine.add_argument("--limit", type=int, default=20, help="newest records shown")
    quarantine.add_argument("--release", default=None, help="'all', or record ids 3,7,...")
    quarantine.add_argument("--json", action="store_true", help="one JSON object")
    quarantine.set_defaults(func=_quarantine)

    rollout = sub.add_parser("rollout", help="a challenger's safe rollout: its steps and why")
    rollout.add_argument("action", choices=["status"])
    rollout.add_argument("--data-dir", required=True, help="engine data directory")
    rollout.add_argument("--json", action="store_true", help="the saved state as one JSON object")
    rollout.set_defaults(func=_rollout)

    bench = sub.add_parser("bench", help="speed figures, side by side with peers")
    bench.add_argument("what", choices=list(BENCHMARKS))
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
