"""``loopwise serve``: the HTTP decision service under uvicorn.

Settings come from flags, then a YAML config file (``--config``), then defaults; the token
from ``--token``, the config file or ``LOOPWISE_TOKEN``. The config's ``engine:`` mapping is
passed to :class:`engine.Engine` (unknown keys are an error naming the key).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

import yaml

DEFAULTS = {"data_dir": "loopwise-data", "host": "127.0.0.1", "port": 8080, "workers": 1,
            "max_body_bytes": 1 << 20, "max_candidates": 200, "token": None, "engine": {}}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with the settings below and an engine: mapping")
    p.add_argument("--data-dir", dest="data_dir", help="engine data directory")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="must be 1: one process owns a data directory")
    p.add_argument("--token", help="bearer token (default: $LOOPWISE_TOKEN)")
    p.add_argument("--max-body-bytes", dest="max_body_bytes", type=int)
    p.add_argument("--max-candidates", dest="max_candidates", type=int)


def settings(args: argparse.Namespace) -> dict:
    cfg = dict(DEFAULTS)
    if args.config:
        try:
            with open(args.config, encoding="utf-8") as fh:
                loaded = yaml.safe_load(fh) or {}
        except (OSError, yaml.YAMLError) as err:
            raise SystemExit(f"--config: cannot read {args.config!r} ({err})") from None
        if not isinstance(loaded, dict):
            raise SystemExit(f"--config: {args.config!r} must hold a mapping of settings")
        for key in loaded:
            if key not in DEFAULTS:
                raise SystemExit(f"config: unknown key {key!r}; allowed: {sorted(DEFAULTS)}")
        cfg.update(loaded)
    for key in DEFAULTS:
        value = getattr(args, key, None)
        if value is not None:
            cfg[key] = value
    cfg["token"] = cfg["token"] or os.environ.get("LOOPWISE_TOKEN")
    if not cfg["token"]:
        raise SystemExit("token: set LOOPWISE_TOKEN, pass --token or put token: in the config")
    if cfg["workers"] != 1:
        raise SystemExit("workers: must be 1; each worker would open the engine's data directory, "
                         "which one process owns at a time (SQLite single writer). Scale out "
                         "with backend: ray in the engine settings instead")
    from engine import Engine

    allowed = set(inspect.signature(Engine.__init__).parameters) - {"self", "data_dir", "clock"}
    if not isinstance(cfg["engine"], dict):
        raise SystemExit("config: engine must be a mapping of Engine settings")
    for key in cfg["engine"]:
        if key not in allowed:
            raise SystemExit(f"config: engine.{key} is not an Engine setting; allowed: "
                             f"{sorted(allowed)}")
    for key in ("port", "max_body_bytes", "max_candidates"):
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise SystemExit(f"{key}: must be a positive integer (got {cfg[key]!r})")
    return cfg


def build(cfg: dict):
    from engine import Engine
    from engine.serve.app import create_app

    engine_kwargs = {"max_candidates": cfg["max_candidates"], **cfg["engine"]}
    eng = Engine(cfg["data_dir"], **engine_kwargs)
    return create_app(eng, cfg["token"], max_body_bytes=cfg["max_body_bytes"],
                      max_candidates=cfg["max_candidates"])


def main(args: argparse.Namespace) -> int:
    import uvicorn

    cfg = settings(args)
    app = build(cfg)
    print(f"loopwise serving {cfg['data_dir']} on http://{cfg['host']}:{cfg['port']}",
          file=sys.stderr)
    # the access log never contains the Authorization header
    uvicorn.run(app, host=cfg["host"], port=cfg["port"], log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)
    return 0
