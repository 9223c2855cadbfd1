"""``loopwise serve``: the HTTP decision service (:mod:`engine.serve`) under uvicorn.

Settings come from flags, then a YAML config file (``--config``), then defaults; the static
token from ``--token``, the config file or ``LOOPWISE_TOKEN``, the token file from
``--token-file``, the config file or ``LOOPWISE_TOKEN_FILE`` (at least one of the two). The
config's ``engine:`` mapping is passed to :class:`engine.Engine` (unknown keys are an error
naming the key).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import yaml

DEFAULTS = {"data_dir": "loopwise-data", "host": "127.0.0.1", "port": 8080, "workers": 1,
            "max_body_bytes": 1 << 20, "max_candidates": 200, "max_header_bytes": 16384,
            "max_headers": 100, "token": None, "token_file": None, "api_docs": "token",
            "access_log": "all", "ssl_certfile": None, "ssl_keyfile": None, "engine": {},
            "personalizer": {}, "results_dir": None}
POSITIVE = ("port", "max_body_bytes", "max_candidates", "max_header_bytes", "max_headers")
CHOICES = {"api_docs": ("off", "token"), "access_log": ("all", "changes", "off")}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML file with the settings below and an engine: mapping")
    p.add_argument("--data-dir", help="engine data directory")
    p.add_argument("--host")
    p.add_argument("--port", type=int)
    p.add_argument("--workers", type=int, help="must be 1: one process owns a data directory")
    p.add_argument("--token", help="static all-scopes bearer token (default: $LOOPWISE_TOKEN)")
    p.add_argument("--token-file",
                   help="named tokens with scopes, re-read on change ($LOOPWISE_TOKEN_FILE)")
    p.add_argument("--max-body-bytes", type=int)
    p.add_argument("--max-candidates", type=int)
    p.add_argument("--max-header-bytes", type=int,
                   help="request line plus headers, refused with 431 beyond (16384)")
    p.add_argument("--max-headers", type=int, help="header lines, refused with 431 beyond (100)")
    p.add_argument("--api-docs", choices=CHOICES["api_docs"],
                   help="token: /openapi.json for the read scope (default); off: no spec")
    p.add_argument("--access-log", choices=CHOICES["access_log"],
                   help="all requests (default), changes (erasures, settings, refusals), off")
    p.add_argument("--ssl-certfile", help="TLS certificate (PEM)")
    p.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    p.add_argument("--results-dir",
                   help="folder of simulate/compare/ope reports for the console's Offline page")


def settings(args: argparse.Namespace) -> dict:
    from engine.config import EngineConfig

    cfg = dict(DEFAULTS)
    if args.config:
        cfg.update(_read_config(args.config))
    cfg.update({key: value for key in DEFAULTS if (value := getattr(args, key, None)) is not None})
    cfg["token"] = cfg["token"] or os.environ.get("LOOPWISE_TOKEN")
    cfg["token_file"] = cfg["token_file"] or os.environ.get("LOOPWISE_TOKEN_FILE")
    if not cfg["token"] and not cfg["token_file"]:
        raise SystemExit("token: set LOOPWISE_TOKEN or LOOPWISE_TOKEN_FILE, pass --token or "
                         "--token-file, or put token: or token_file: in the config")
    if cfg["token_file"] and not os.path.isfile(cfg["token_file"]):
        raise SystemExit(f"token_file: {cfg['token_file']!r} does not exist (make it with "
                         "`loopwise token add NAME --file ...`)")
    if cfg["workers"] != 1:
        raise SystemExit("workers: must be 1; each worker would open the engine's data directory, "
                         "which one process owns at a time (SQLite single writer). Scale out "
                         "with backend: ray in the engine settings instead")
    if bool(cfg["ssl_certfile"]) != bool(cfg["ssl_keyfile"]):
        raise SystemExit("ssl_certfile, ssl_keyfile: give both or neither")
    EngineConfig.from_mapping(cfg["engine"])  # errors named as in the file: engine.seed
    for key in POSITIVE:
        if not isinstance(cfg[key], int) or cfg[key] < 1:
            raise SystemExit(f"{key}: must be a positive integer (got {cfg[key]!r})")
    for key, allowed in CHOICES.items():
        if cfg[key] not in allowed:
            raise SystemExit(f"{key}: one of {list(allowed)} (got {cfg[key]!r})")
    return cfg


def _read_config(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            loaded = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as err:
        raise SystemExit(f"--config: cannot read {path!r} ({err})") from None
    if not isinstance(loaded, dict):
        raise SystemExit(f"--config: {path!r} must hold a mapping of settings")
    for key in loaded:
        if key not in DEFAULTS:
            raise SystemExit(f"config: unknown key {key!r}; allowed: {sorted(DEFAULTS)}")
    return loaded


def build(cfg: dict):
    from engine import Engine
    from engine.errors import ValidationError
    from engine.serve.app import create_app
    from engine.serve.tokens import Tokens

    try:
        tokens = Tokens(cfg["token"], cfg["token_file"])
    except ValueError as err:
        raise SystemExit(str(err)) from None
    engine_kwargs = {"max_candidates": cfg["max_candidates"], **cfg["engine"]}
    try:
        eng = Engine(cfg["data_dir"], **engine_kwargs)
    except ValidationError as err:  # named as in serve.yaml's engine: mapping
        raise ValidationError(f"engine.{err.field}", err.reason, err.value) from None
    return create_app(eng, tokens, max_body_bytes=cfg["max_body_bytes"],
                      max_candidates=cfg["max_candidates"], max_headers=cfg["max_headers"],
                      api_docs=cfg["api_docs"], access_log=cfg["access_log"],
                      personalizer=cfg["personalizer"], results_dir=cfg["results_dir"])


def uvicorn_config(app, cfg: dict, **overrides):
    """The ``uvicorn.Config`` of ``app`` under ``cfg`` (any keys of :data:`DEFAULTS` it
    lacks take their defaults): the bounded request-head protocol, TLS where configured,
    uvicorn's own access log off (ours names the token and never logs it)."""
    import uvicorn

    from engine.serve.limits import http_protocol

    cfg = {**DEFAULTS, **cfg}
    return uvicorn.Config(app, **{
        "host": cfg["host"], "port": cfg["port"], "http": http_protocol(cfg["max_header_bytes"]),
        "log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 10,
        "ssl_certfile": cfg["ssl_certfile"], "ssl_keyfile": cfg["ssl_keyfile"], **overrides})


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s"))
    for name in ("loopwise.access", "loopwise.error", "loopwise.tokens"):
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        logger.propagate = False


def main(args: argparse.Namespace) -> int:
    import uvicorn

    cfg = settings(args)
    app = build(cfg)
    scheme = "https" if cfg["ssl_certfile"] else "http"
    print(f"loopwise serving {cfg['data_dir']} on {scheme}://{cfg['host']}:{cfg['port']}",
          file=sys.stderr)
    _log_to_stderr()
    uvicorn.Server(uvicorn_config(app, cfg)).run()
    return 0
