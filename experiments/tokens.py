"""``loopwise token``: add, list and remove the named HTTP tokens of a token file
(:mod:`engine.serve.tokens`)."""

from __future__ import annotations

import argparse
import os
import sys

from engine.serve.tokens import SCOPES, add, read_file, remove


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["add", "list", "remove"])
    p.add_argument("name", nargs="?", help="the token's name (add, remove)")
    p.add_argument("--scopes", default="rank", help=f"comma-separated, of {','.join(SCOPES)}")
    p.add_argument("--file", default=os.environ.get("LOOPWISE_TOKEN_FILE"),
                   help="token file (default: $LOOPWISE_TOKEN_FILE)")


def main(args: argparse.Namespace) -> int:
    try:
        if not args.file:
            raise ValueError("--file: give the token file (or set LOOPWISE_TOKEN_FILE)")
        if args.action == "list":
            for name, e in sorted(read_file(args.file).items()):
                print(f"{name}\t{','.join(e['scopes'])}\t{e.get('created', '')}")
            return 0
        if not args.name:
            raise ValueError(f"name: {args.action} needs the token's name")
        if args.action == "add":
            scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
            print(add(args.file, args.name, scopes))
            print(f"token {args.name!r} added to {args.file}; it is shown only this once",
                  file=sys.stderr)
            return 0
        if not remove(args.file, args.name):
            print(f"error: no token called {args.name!r} in {args.file}", file=sys.stderr)
            return 1
        return 0
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
