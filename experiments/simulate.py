"""``loopwise simulate``: the engine against drifting simulated users, policy by policy.

Writes ``results/<run-name>/`` with ``steps.parquet`` (every step of every run),
``summary.parquet``, ``reward.png``, ``regret.png`` and ``report.md``, and prints the table.
On a session preset (``long_term``) users come in sessions and the table and
``summary.parquet`` add each policy's mean return and length per finished session with 95%
CIs (``episode_return``, ``episode_return_lo``, ``episode_return_hi``, ``session_length``, ...),
and ``return.png`` plots the return per session over training.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from experiments.loop import SESSION_PRESETS, RunResult, one_thread, run_policy
from experiments.metrics import PolicySummary, summarize, summarize_sessions
from simulators import PRESETS, make_config

DEFAULT_POLICIES = ("uniform", "egreedy", "linucb", "squarecb", "lints")


@dataclass
class SimulateConfig:
    """What ``loopwise simulate`` runs."""

    preset: str = "drifting"
    """Simulator preset (stationary, drifting, trend, fatigue, cold_start, long_term)."""
    policies: tuple[str, ...] = DEFAULT_POLICIES
    """Policies to compare (names from ``policies.available()``)."""
    steps: int = 20_000
    """User-steps per run (one decision each)."""
    shift_step: int | None = None
    """Step of the abrupt shift (default: half way, for the presets with one: drifting,
    trend)."""
    seeds: tuple[int, ...] = (0,)
    """Seeds; each policy runs once per seed on the same simulated users."""
    batch_size: int = 200
    """Users stepped (and decisions ranked) at once."""
    n_users: int = 2000
    """Simulated population size."""
    out_dir: str = "results"
    """Where run folders are written."""
    run_name: str | None = None
    """Folder name (default: ``simulate-<preset>-s<seeds>-<time>``)."""
    policy_params: dict = field(default_factory=dict)
    """Per-policy parameters, e.g. ``{"lints": {"v": 0.2}}``."""
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    """Runs (policy x seed) in parallel processes; results do not depend on it."""

    def resolved_shift(self) -> int | None:
        if self.shift_step is not None:
            return self.shift_step
        return self.steps // 2 if "shift_step" in PRESETS.get(self.preset, {}) else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = SimulateConfig()
    parser.add_argument("--preset", default=d.preset, help="simulator preset (default: drifting)")
    parser.add_argument("--policies", default=",".join(d.policies),
                        help="comma-separated policy names (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=d.steps, help="user-steps per run")
    parser.add_argument("--shift-step", type=int, default=None, help="step of the abrupt shift")
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--users", type=int, default=d.n_users, help="simulated users")
    parser.add_argument("--out", default=d.out_dir, help="results folder (default: results)")
    parser.add_argument("--name", default=None, help="run name (default: from preset and time)")
    parser.add_argument("--params", default="{}",
                        help='JSON per-policy parameters, e.g. \'{"lints": {"v": 0.2}}\'')
    parser.add_argument("--workers", type=int, default=d.workers,
                        help="parallel processes, one run each (default: the CPU count)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def config_from_args(args: argparse.Namespace) -> SimulateConfig:
    def ints(text: str, flag: str) -> tuple[int, ...]:
        try:
            return tuple(int(x) for x in text.split(",") if x.strip())
        except ValueError:
            raise SystemExit(f"{flag}: must be comma-separated integers (got {text!r})") from None

    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--params: not valid JSON ({err})") from None
    cfg = SimulateConfig(
        preset=args.preset, policies=tuple(p.strip() for p in args.policies.split(",") if p.strip()),
        steps=args.steps, shift_step=args.shift_step, seeds=ints(args.seeds, "--seeds"),
        batch_size=args.batch_size, n_users=args.users, out_dir=args.out, run_name=args.name,
        policy_params=params, workers=args.workers)
    validate(cfg)
    return cfg


def validate(cfg: SimulateConfig) -> None:
    from policies import available

    if cfg.steps < cfg.batch_size:
        raise SystemExit(f"--steps: must be at least --batch-size={cfg.batch_size} (got {cfg.steps})")
    if not cfg.policies:
        raise SystemExit("--policies: name at least one policy")
    for p in cfg.policies:
        if p not in available():
            raise SystemExit(f"--policies: unknown policy {p!r}; choose from {available()}")
    if cfg.preset not in PRESETS:
        raise SystemExit(f"--preset: unknown preset {cfg.preset!r}; choose from {list(PRESETS)}")
    _check_params(cfg)
    if not cfg.seeds:
        raise SystemExit("--seeds: give at least one seed")
    if not isinstance(cfg.workers, int) or cfg.workers < 1:
        raise SystemExit(f"--workers: must be an integer >= 1 (got {cfg.workers!r})")
    shift = cfg.resolved_shift()
    if shift is not None and not 0 < shift < cfg.steps:
        raise SystemExit(f"--shift-step: must lie in (0, {cfg.steps}) (got {shift})")


def _check_params(cfg: SimulateConfig) -> None:
    """``--params``: a mapping of policies that run to their parameters, each accepted by
    the policy (checked here, once, rather than in every worker)."""
    from policies import make
    from policies.errors import ValidationError

    if not isinstance(cfg.policy_params, dict):
        raise SystemExit("--params: must be a JSON object of policy name to parameters "
                         f"(got {cfg.policy_params!r})")
    for name, params in cfg.policy_params.items():
        if name not in cfg.policies:
            raise SystemExit(f"--params.{name}: {name!r} is not run (--policies "
                             f"{','.join(cfg.policies)}); leave it out or add it there")
        if not isinstance(params, dict):
            raise SystemExit(f"--params.{name}: must be a JSON object of parameters "
                             f"(got {params!r})")
        try:
            make(name, n_features=4, seed=0, **params)
        except ValidationError as err:  # named by the parameter at fault
            raise ValidationError(f"--params.{name}.{err.field}", err.reason, err.value) from None


def run(cfg: SimulateConfig, progress: bool = True) -> tuple[Path, list[PolicySummary]]:
    """Run every policy on every seed; write the results folder; return it and the table."""
    validate(cfg)
    shift = cfg.resolved_shift()
    overrides = {"n_users": cfg.n_users}
    if shift is not None:
        overrides["shift_step"] = shift
    sim = make_config(cfg.preset, **overrides)
    name = cfg.run_name or (f"simulate-{cfg.preset}-s{'_'.join(map(str, cfg.seeds))}-"
                            f"{time.strftime('%Y%m%d-%H%M%S')}")
    out = Path(cfg.out_dir) / name
    out.mkdir(parents=True, exist_ok=True)
    total = len(cfg.policies) * len(cfg.seeds) * (cfg.steps // cfg.batch_size * cfg.batch_size)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, unit="step", desc="simulate", smoothing=0.1)
    jobs = [(policy, seed) for policy in cfg.policies for seed in cfg.seeds]
    try:
        results = _run_jobs(sim, cfg, jobs, bar)
    finally:
        if bar is not None:
            bar.close()
    window = max(cfg.batch_size, cfg.steps // 40)
    summaries = []
    for policy in cfg.policies:
        runs = [r for r in results if r.policy == policy]
        summary = summarize(policy, np.stack([r.rewards for r in runs]),
                            np.stack([r.regrets for r in runs]),
                            np.stack([r.clicks for r in runs]), shift, window)
        if cfg.preset in SESSION_PRESETS:  # every finished session of every seed is a unit
            summary.sessions = summarize_sessions(
                np.concatenate([r.episode_returns for r in runs]),
                np.concatenate([r.episode_lengths for r in runs]))
        summaries.append(summary)
    from experiments.report import write_report

    write_report(out, cfg, sim, results, summaries, shift, window)
    return out, summaries


def _one(sim, cfg: SimulateConfig, policy: str, seed: int, progress=None) -> RunResult:
    return run_policy(sim, policy, cfg.policy_params.get(policy), seed=seed, steps=cfg.steps,
                      batch_size=cfg.batch_size, progress=progress,
                      sessions=cfg.preset in SESSION_PRESETS)


def _run_jobs(sim, cfg: SimulateConfig, jobs: list[tuple[str, int]], bar) -> list[RunResult]:
    """Every (policy, seed) run, in job order; in ``cfg.workers`` processes when > 1."""
    workers = min(cfg.workers, len(jobs))
    if workers <= 1:
        results = []
        for policy, seed in jobs:
            if bar is not None:
                bar.set_postfix_str(f"{policy} seed {seed}")
            results.append(_one(sim, cfg, policy, seed, None if bar is None else bar.update))
        return results
    import multiprocessing

    # without a bar no manager process starts; with one, workers report steps on its queue
    # and one thread here moves the bar
    with (multiprocessing.Manager() if bar is not None else contextlib.nullcontext()) as manager:
        progress = None
        if manager is not None:
            queue = manager.Queue()

            def pump():
                while (n := queue.get()) is not None:
                    bar.update(n)

            mover = threading.Thread(target=pump, daemon=True)
            mover.start()
            bar.set_postfix_str(f"{len(jobs)} runs in {workers} processes")
            progress = queue.put
        try:
            with ProcessPoolExecutor(max_workers=workers, initializer=one_thread) as pool:
                futures = [pool.submit(_one, sim, cfg, policy, seed, progress)
                           for policy, seed in jobs]
                return [f.result() for f in futures]
        finally:
            if manager is not None:
                queue.put(None)
                mover.join(timeout=5)


def main(args: argparse.Namespace) -> int:
    from experiments.report import format_table

    cfg = config_from_args(args)
    start = time.perf_counter()
    out, summaries = run(cfg, progress=not args.no_progress)
    print(format_table(summaries))
    print(f"\n{len(cfg.policies) * len(cfg.seeds)} runs of {cfg.steps} steps in "
          f"{time.perf_counter() - start:.0f}s ({min(cfg.workers, len(cfg.policies) * len(cfg.seeds))}"
          " processes)")
    plots = "reward.png, regret.png" + (", return.png" if cfg.preset in SESSION_PRESETS else "")
    print(f"\nresults written to {out}/ (steps.parquet, summary.parquet, {plots}, report.md)")
    return 0


__all__ = ["SimulateConfig", "add_arguments", "asdict", "main", "run"]
