"""``loopwise compare CONFIG.yaml``: an online A/B test of policy variants in simulation.

Each seed runs one engine whose users are split stickily between the variants (the same
mechanism as production traffic); seeds run in parallel processes. The report gives each
variant's reward with a CI over seeds, the paired per-seed differences against the control,
and the engine's own online A/B statistics per seed (Welch, always-valid sequential test, SRM).
On a session preset (``long_term``) it adds each variant's mean return per session and
session length with 95% CIs (over seeds where there are several, else over the sessions of
the one seed) and the paired per-seed differences of return per session against the control.
It writes ``report.md``, ``report.json`` and ``summary.parquet`` (one row per variant).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import ValidationError as PydanticError

from engine.errors import ValidationError
from experiments.metrics import sample_mean_ci, summarize_sessions


class SimulatorSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    preset: str = "drifting"
    n_users: int = Field(2000, ge=10)
    settings: dict[str, Any] = Field(default_factory=dict)

    @field_validator("preset")
    @classmethod
    def _known(cls, v: str) -> str:
        from simulators import PRESETS

        if v not in PRESETS:
            raise ValueError(f"unknown preset {v!r}; choose from {list(PRESETS)}")
        return v


class VariantSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    policy: str
    weight: float = Field(1.0, gt=0)
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("policy")
    @classmethod
    def _known(cls, v: str) -> str:
        from policies import available

        if v not in available():
            raise ValueError(f"unknown policy {v!r}; choose from {available()}")
        return v

    @model_validator(mode="after")
    def _params_accepted(self) -> VariantSpec:
        """The policy is built once here, so a bad parameter is named in the config's terms
        (``variants.b.params: ...``) before any worker starts."""
        from policies import make

        try:
            make(self.policy, n_features=4, seed=0, **self.params)
        except ValidationError as err:  # named by the parameter at fault
            raise ValueError(str(ValidationError(f"params.{err.field}", err.reason, err.value))
                             ) from None
        return self


class CompareConfig(BaseModel):
    """The YAML file of ``loopwise compare`` (see ``experiments/configs/``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = "compare"
    simulator: SimulatorSpec = Field(default_factory=SimulatorSpec)
    horizon: int = Field(10_000, ge=1)
    batch_size: int = Field(200, ge=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    workers: int = Field(2, ge=1, le=64)
    control: str | None = None
    variants: dict[str, VariantSpec] = Field(min_length=2)
    alpha: float = Field(0.05, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> CompareConfig:
        if self.control is None:
            self.control = next(iter(self.variants))
        if self.control not in self.variants:
            raise ValueError(f"control: {self.control!r} is not one of the variants "
                             f"{list(self.variants)}")
        if self.horizon < self.batch_size:
            raise ValueError(f"horizon: must be at least batch_size={self.batch_size}")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds: must be distinct")
        from simulators import make_config

        try:
            make_config(self.simulator.preset, **self._sim_overrides())
        except ValueError as err:
            raise ValueError(f"simulator.settings: {err}") from None
        return self

    def _sim_overrides(self) -> dict:
        out = {"n_users": self.simulator.n_users, **self.simulator.settings}
        if self.simulator.preset == "drifting" and "shift_step" not in out:
            out["shift_step"] = max(1, self.horizon // 2)
        return out


class ConfigError(ValidationError):
    """A config file that cannot be used; the message names the file, the key and the
    problem (``path: key: problem``)."""


def load_config(path: str | Path) -> CompareConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(str(path), "no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), f"not valid YAML ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "must be a YAML mapping of settings")
    try:
        return CompareConfig.model_validate(raw)
    except PydanticError as err:
        problems = []
        for e in err.errors():
            key = ".".join(str(x) for x in e["loc"]) or "(top level)"
            msg = e["msg"].removeprefix("Value error, ")
            problems.append(f"{key}: {msg}")
        raise ConfigError(str(path), "; ".join(problems)) from None


def _run_seed(cfg_json: str, seed: int) -> dict:
    """One seed (in a worker process): the engine with all variants against the simulator."""
    from experiments.loop import SESSION_PRESETS, run_policy
    from simulators import make_config

    cfg = CompareConfig.model_validate_json(cfg_json)
    sim = make_config(cfg.simulator.preset, **cfg._sim_overrides())
    variants = {k: {"policy": v.policy, "params": v.params, "weight": v.weight}
                for k, v in cfg.variants.items()}
    sessions = cfg.simulator.preset in SESSION_PRESETS
    res = run_policy(sim, "ab", seed=seed, steps=cfg.horizon, batch_size=cfg.batch_size,
                     variants=variants, salt=f"{cfg.name}-{seed}", sessions=sessions)
    names = res.extra["variants"]
    per_variant = {}
    for v in cfg.variants:
        sel = names == v
        per_variant[v] = {"n": int(sel.sum()), "mean_reward": float(res.rewards[sel].mean())
                          if sel.any() else math.nan,
                          "mean_regret": float(res.regrets[sel].mean()) if sel.any() else math.nan}
        if sessions:  # the finished sessions of the variant's users, in the order they ended
            ended = res.episode_variants == v
            per_variant[v]["episode_returns"] = res.episode_returns[ended].tolist()
            per_variant[v]["episode_lengths"] = res.episode_lengths[ended].tolist()
    return {"seed": seed, "variants": per_variant, "ab_report": res.extra["ab_report"]}


def run_compare(cfg: CompareConfig, out_dir: str | Path = "results") -> tuple[Path, dict]:
    cfg_json = cfg.model_dump_json()
    if cfg.workers > 1 and len(cfg.seeds) > 1:
        from experiments.loop import one_thread

        with ProcessPoolExecutor(max_workers=min(cfg.workers, len(cfg.seeds)),
                                 initializer=one_thread) as pool:
            per_seed = list(pool.map(_run_seed, [cfg_json] * len(cfg.seeds), cfg.seeds))
    else:
        per_seed = [_run_seed(cfg_json, s) for s in cfg.seeds]
    report = summarize_seeds(cfg, per_seed)
    out = Path(out_dir) / f"compare-{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, default=_jsonable))
    (out / "report.md").write_text(format_compare(report) + "\n")
    pq.write_table(pa.Table.from_pylist(summary_rows(report)), out / "summary.parquet")
    return out, report


def summary_rows(report: dict) -> list[dict]:
    """One row per variant for ``summary.parquet``: mean reward per decision with its 95% CI
    over seeds and, on a session preset, return per session and session length with theirs."""
    sessions = report.get("sessions", {}).get("variants", {})
    rows = []
    for v, r in report["variants"].items():
        row = {"variant": v, "mean_reward": r["mean_reward"], "mean_reward_lo": r["ci"][0],
               "mean_reward_hi": r["ci"][1]}
        row.update({k: x for k, x in sessions.get(v, {}).items() if k != "per_seed_return"})
        rows.append(row)
    return rows


def summarize_seeds(cfg: CompareConfig, per_seed: list[dict]) -> dict:
    variants = {}
    for v in cfg.variants:
        means = np.array([s["variants"][v]["mean_reward"] for s in per_seed])
        m, lo, hi = sample_mean_ci(means)
        variants[v] = {"mean_reward": m, "ci": [lo, hi], "per_seed": means.tolist()}
    diffs = {}
    ctrl = np.array([s["variants"][cfg.control]["mean_reward"] for s in per_seed])
    for v in cfg.variants:
        if v == cfg.control:
            continue
        d = np.array([s["variants"][v]["mean_reward"] for s in per_seed]) - ctrl
        m, lo, hi = sample_mean_ci(d)
        diffs[v] = {"mean_diff": m, "ci": [lo, hi], "per_seed": d.tolist(),
                    "wins": int((d > 0).sum()), "seeds": len(d)}
    online = [{"seed": s["seed"], "comparisons": {
        t: {"lift": c["lift"], "lift_ci": c["lift_ci"], "welch_p": c["welch"]["p_value"],
            "sequential_p": c["sequential"]["p_value"], "decision": c["decision"]}
        for t, c in s["ab_report"]["comparisons"].items()},
        "srm_p": s["ab_report"]["srm"]["p_value"], "srm_mismatch": s["ab_report"]["srm"]["mismatch"]}
        for s in per_seed]
    report = {"name": cfg.name, "control": cfg.control, "config": cfg.model_dump(),
              "variants": variants, "paired_differences": diffs, "online_ab": online}
    if "episode_returns" in per_seed[0]["variants"][cfg.control]:
        report["sessions"] = summarize_session_seeds(cfg, per_seed)
    return report


def _seed_mean(values: list) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def summarize_session_seeds(cfg: CompareConfig, per_seed: list[dict]) -> dict:
    """Return per session and session length per variant, 95% CIs over the seeds' means
    (one seed: over its sessions), paired per-seed differences of return per session
    against the control and, with three variants or more, between every two treatments
    (``paired_between``); each variant's mean return per session over the best other's
    (``ratio_to_best_other``)."""
    over = "seeds" if len(per_seed) >= 2 else "sessions"
    variants = {}
    for v in cfg.variants:
        rets = [s["variants"][v]["episode_returns"] for s in per_seed]
        lens = [s["variants"][v]["episode_lengths"] for s in per_seed]
        if over == "seeds":
            out = {"n_sessions": sum(len(r) for r in rets)}
            for key, vals in (("episode_return", rets), ("session_length", lens)):
                m, lo, hi = sample_mean_ci([_seed_mean(x) for x in vals])
                out.update({key: m, f"{key}_lo": lo, f"{key}_hi": hi})
        else:
            out = summarize_sessions(rets[0], lens[0])
        out["per_seed_return"] = [_seed_mean(x) for x in rets]
        variants[v] = out
    ctrl = np.array(variants[cfg.control]["per_seed_return"])
    diffs = {}
    for v in cfg.variants:
        if v == cfg.control:
            continue
        d = np.array(variants[v]["per_seed_return"]) - ctrl
        m, lo, hi = sample_mean_ci(d)
        diffs[v] = {"mean_diff": m, "ci": [lo, hi], "per_seed": d.tolist(),
                    "wins": int((d > 0).sum()), "seeds": len(d)}
    treatments = [v for v in cfg.variants if v != cfg.control]
    between = {}
    for i, a in enumerate(treatments):
        for b in treatments[i + 1:]:
            d = np.array(variants[a]["per_seed_return"]) - np.array(variants[b]["per_seed_return"])
            m, lo, hi = sample_mean_ci(d)
            between[f"{a} - {b}"] = {"mean_diff": m, "ci": [lo, hi], "per_seed": d.tolist(),
                                     "wins": int((d > 0).sum()), "seeds": len(d)}
    ratio = {v: variants[v]["episode_return"] / max(variants[w]["episode_return"]
                                                    for w in cfg.variants if w != v)
             for v in cfg.variants}
    return {"ci_over": over, "variants": variants, "paired_differences": diffs,
            "paired_between": between, "ratio_to_best_other": ratio}


def _jsonable(x):
    if isinstance(x, float) and math.isnan(x):
        return None
    return str(x)


def _f(x, spec=".4f") -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def format_compare(report: dict) -> str:
    lines = [f"A/B comparison '{report['name']}' (control: {report['control']})", "",
             "variant      mean reward  95% CI over seeds", "-----------  -----------  ------------------"]
    for v, r in report["variants"].items():
        lines.append(f"{v:<11}  {_f(r['mean_reward']):>11}  [{_f(r['ci'][0])}, {_f(r['ci'][1])}]")
    lines += ["", "paired difference vs control (per seed, same simulated users):"]
    for v, d in report["paired_differences"].items():
        lines.append(f"  {v}: {_f(d['mean_diff'], '+.4f')} [{_f(d['ci'][0], '+.4f')}, "
                     f"{_f(d['ci'][1], '+.4f')}], better in {d['wins']}/{d['seeds']} seeds")
    if "sessions" in report:
        lines += ["", *format_sessions(report["sessions"])]
    lines += ["", "online A/B inside the engine, per seed (lift, Welch p, sequential p, SRM p):"]
    for s in report["online_ab"]:
        for t, c in s["comparisons"].items():
            lines.append(f"  seed {s['seed']} {t}: lift {_f(c['lift'], '+.3f')} "
                         f"[{_f(c['lift_ci'][0], '+.3f')}, {_f(c['lift_ci'][1], '+.3f')}], "
                         f"Welch p={_f(c['welch_p'], '.3g')}, sequential p={_f(c['sequential_p'], '.3g')}"
                         f" -> {c['decision']}; SRM p={_f(s['srm_p'], '.3g')}")
    return "\n".join(lines)


def format_sessions(sessions: dict) -> list[str]:
    """The session section of the report: return and length per session, paired differences."""
    over = ("over seeds (each seed's mean over its finished sessions)"
            if sessions["ci_over"] == "seeds" else "over the finished sessions (one seed)")
    lines = [f"per session (sessions that finished; 95% CIs {over}):",
             "variant      return/session [95% CI]       session length [95% CI]   sessions",
             "-----------  ----------------------------  ------------------------  --------"]
    for v, r in sessions["variants"].items():
        ret = (f"{_f(r['episode_return'], '.3f')} [{_f(r['episode_return_lo'], '.3f')}, "
               f"{_f(r['episode_return_hi'], '.3f')}]")
        length = (f"{_f(r['session_length'], '.2f')} [{_f(r['session_length_lo'], '.2f')}, "
                  f"{_f(r['session_length_hi'], '.2f')}]")
        lines.append(f"{v:<11}  {ret:<28}  {length:<24}  {r['n_sessions']:>8}")
    for title, diffs in (("vs control", sessions["paired_differences"]),
                         ("between treatments", sessions.get("paired_between"))):
        if not diffs:
            continue
        lines += ["", f"paired difference of return per session {title} (per seed):"]
        for v, d in diffs.items():
            lines.append(f"  {v}: {_f(d['mean_diff'], '+.3f')} [{_f(d['ci'][0], '+.3f')}, "
                         f"{_f(d['ci'][1], '+.3f')}], better in {d['wins']}/{d['seeds']} seeds")
    ratios = sessions.get("ratio_to_best_other", {})
    if ratios:
        lines += ["", "return per session over the best other variant's: " + ", ".join(
            f"{v} {_f(r, '.2f')}x" for v, r in ratios.items())]
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML file (see experiments/configs/)")
    parser.add_argument("--out", default="results", help="results folder (default: results)")


def main(args: argparse.Namespace) -> int:
    cfg = load_config(args.config)  # a ConfigError is the CLI's one-line error
    out, report = run_compare(cfg, args.out)
    print(format_compare(report))
    print(f"\nreport written to {out}/ (report.md, report.json, summary.parquet)")
    return 0
