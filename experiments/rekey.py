"""``loopwise rekey``: re-key a pseudonymous data directory (:mod:`engine.privacy.rekey`),
and ``loopwise pseudonym-key --out FILE``: make a new key file.

The user ids come one per line from ``--ids`` (``-``: standard input); the old key is
``--old-key-file`` or ``$LOOPWISE_PSEUDONYM_KEY_FILE``. Re-keying re-draws every user's A/B
variant (assignment hashes the stored id): do it between experiments. Afterwards configure
the new key and destroy the old one.
"""

from __future__ import annotations

import argparse
import sys

from engine.errors import ValidationError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", dest="data_dir", required=True, help="engine data directory")
    p.add_argument("--ids", required=True, help="file of the application's user ids, one a "
                   "line ('-': standard input)")
    p.add_argument("--new-key-file", dest="new_key_file", required=True)
    p.add_argument("--old-key-file", dest="old_key_file", default=None,
                   help="default: $LOOPWISE_PSEUDONYM_KEY_FILE")
    p.add_argument("--drop-unmatched", dest="drop_unmatched", action="store_true",
                   help="erase stored users whose pseudonym none of the ids produces")


def main(args: argparse.Namespace) -> int:
    from engine.privacy.pseudonym import ENV, key_file
    from engine.privacy.rekey import rekey

    old = key_file(args.old_key_file)
    if old is None:
        raise ValidationError("--old-key-file", f"is required (or set {ENV})")
    fh = sys.stdin if args.ids == "-" else open(args.ids, encoding="utf-8")
    with fh:
        ids = [line.rstrip("\n") for line in fh if line.strip()]
    out = rekey(args.data_dir, old, args.new_key_file, ids, args.drop_unmatched)
    print(f"re-keyed {out['users']} user(s); {out['moved']} moved shard; "
          f"{out['dropped']} unmatched erased. Configure the new key and destroy the old one.")
    return 0


def new_key_main(args: argparse.Namespace) -> int:
    from engine.privacy.pseudonym import new_key

    try:
        new_key(args.out)
    except FileExistsError:
        raise ValidationError("--out", "already exists; a key is never overwritten",
                              args.out) from None
    print(f"new pseudonym key in {args.out} (readable by its owner only); keep it outside "
          "the data directory")
    return 0
