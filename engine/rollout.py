"""Safe rollout: a challenger policy in shadow, promoted by steps of traffic while its
off-policy estimate on the champion's own log beats the champion's by a margin with
confidence; every user goes back to the champion as soon as the online A/B statistics show
the challenger worse.

One :class:`Rollout` owns the state and every decision about steps. The engine calls it on
two paths only: :meth:`Rollout.act` when deciding (one batched ``act`` of the challenger on
the features the champion saw) and :meth:`Rollout.observe` when rewards are learned; the
gate is re-evaluated every ``check_every`` learned rewards, never per request. Every step
and its reason go to ``rollout.jsonl`` in the data directory; the state to ``rollout.json``.

The gate's estimator is streaming SNIPS (:class:`OffPolicyGap`); the batch estimators with
bootstrap intervals for offline logs stay in :mod:`experiments.ope`.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engine.abtest import DEFAULT_TARGET_N, VariantStats, cs_radius, hash_unit, mixture_tau2, msprt
from engine.abtest.report import json_number
from engine.checks import check_int, check_number, check_probability, settings_from
from engine.errors import ValidationError

#: the variant name the challenger's served decisions are logged under
CHALLENGER = "challenger"
#: files of a rollout in the data directory: its step log and its current state
LOG_NAME, STATE_NAME = "rollout.jsonl", "rollout.json"


@dataclass(frozen=True)
class RolloutConfig:
    """Settings of a rollout (``rollout:`` in serve.yaml's ``engine:`` mapping).

    Examples
    --------
    >>> cfg = RolloutConfig.from_mapping({"challenger": {"policy": "linucb"}})
    >>> cfg.steps, cfg.margin, cfg.alpha
    ((0.1, 0.5, 1.0), 0.0, 0.05)
    >>> RolloutConfig.from_mapping({"challenger": {"policy": "linucb"}, "steps": [0.5, 0.2]})
    Traceback (most recent call last):
    ...
    policies.errors.ValidationError: rollout.steps: must rise strictly to 1.0, each in (0, 1] (got [0.5, 0.2])
    """

    challenger: Mapping = field(default_factory=dict)
    """``{"policy": name or policy object, "params": {...}}`` of the challenger."""
    steps: Sequence[float] = (0.1, 0.5, 1.0)
    """Shares of users served by the challenger, step by step; the last is 1.0."""
    margin: float = 0.0
    """How far the challenger's estimated value must exceed the champion's: the lower bound
    of the difference's confidence sequence must be above it."""
    alpha: float = 0.05
    """Error level of the off-policy confidence sequence and of the online A/B test."""
    min_events_per_step: int = 500
    """Learned rewards a step needs before the next (shadow: of the champion's decisions;
    a served step: of the challenger's)."""
    check_every: int = 100
    """Learned rewards between two evaluations of the gate."""

    def __post_init__(self) -> None:
        spec = self.challenger
        if not isinstance(spec, Mapping) or "policy" not in spec:
            raise ValidationError("challenger", "must be a mapping with 'policy' (and "
                                  "optionally 'params')", spec)
        check_policy_spec(spec, "challenger", ("policy", "params"))
        steps = self.steps
        if not (isinstance(steps, (list, tuple)) and steps and all(
                type(s) in (int, float) for s in steps) and 0 < steps[0] and steps[-1] == 1
                and list(steps) == sorted(set(steps))):  # rising strictly
            raise ValidationError("steps", "must rise strictly to 1.0, each in (0, 1]", steps)
        check_number("margin", self.margin, -1e6, 1e6)
        check_probability("alpha", self.alpha)
        check_int("min_events_per_step", self.min_events_per_step, 1)
        check_int("check_every", self.check_every, 1)
        object.__setattr__(self, "steps", tuple(float(s) for s in steps))
        object.__setattr__(self, "margin", float(self.margin))
        object.__setattr__(self, "alpha", float(self.alpha))

    @classmethod
    def from_mapping(cls, mapping: object, where: str = "rollout") -> RolloutConfig:
        """The settings a mapping gives; errors name the key under ``where``."""
        if isinstance(mapping, RolloutConfig):
            return mapping
        return settings_from(cls, mapping, where, "rollout settings")

    def describe(self) -> dict:
        """JSON-ready settings (a policy object by its class name)."""
        pol = self.challenger["policy"]
        return {**vars(self), "steps": list(self.steps), "challenger": {
            "policy": pol if isinstance(pol, str) else type(pol).__name__,
            "params": dict(self.challenger.get("params") or {})}}


def check_policy_spec(spec: Mapping, where: str, keys: tuple[str, ...]) -> None:
    """Refuse keys of a policy spec (``{"policy", "params", ...}``) beside ``keys``, and
    params that are not a mapping."""
    extra = set(spec) - set(keys)
    if extra:
        raise ValidationError(f"{where}.{sorted(extra)[0]}",
                              f"unknown key; allowed: {', '.join(keys)}")
    if spec.get("params") is not None and not isinstance(spec["params"], Mapping):
        raise ValidationError(f"{where}.params", "must be a mapping of parameter names",
                              spec["params"])


class OffPolicyGap:
    """Streaming SNIPS estimate of a target policy's value minus the logging policy's, on
    the logging policy's own rounds, with an always-valid confidence sequence.

    Per round: reward r_i and importance weight w_i = pi(a_i) / p_i (target's probability
    of the logged action over the logged propensity). The logging policy's value is
    mean(r); the target's is SNIPS, sum(w r) / sum(w). The difference's influence terms
    psi_i = w_i (r_i - V_pi) / mean(w) - (r_i - V_0) give its variance mean(psi^2) / n
    (delta method); :func:`engine.abtest.cs_radius` turns that into a ``1 - alpha``
    confidence sequence, valid however often it is looked at. The state is nine sums.

    Examples
    --------
    >>> gap = OffPolicyGap()
    >>> for w, r in [(2.0, 1.0), (0.0, 0.0), (2.0, 1.0), (0.0, 1.0)]:
    ...     gap.add(w, r)
    >>> e = gap.estimate(0.05)
    >>> e["n"], e["champion"], e["challenger"], e["difference"]
    (4, 0.75, 1.0, 0.25)
    """

    _FIELDS = ("n", "w", "r", "wr", "rr", "ww", "wwr", "wwrr", "wrr")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self._FIELDS, 0.0)

    def add(self, w: float, r: float) -> None:
        """One logged round: its importance weight and reward."""
        s, wr, ww = self.sums, w * r, w * w
        for key, x in zip(self._FIELDS, (1.0, w, r, wr, r * r, ww, ww * r, ww * r * r, wr * r),
                          strict=True):
            s[key] += x

    def estimate(self, alpha: float, target_n: float = DEFAULT_TARGET_N) -> dict:
        """``{"n", "champion", "challenger", "difference", "low", "high"}`` (values None
        until a round with positive weight; bounds infinite until the variance is known)."""
        s = self.sums
        n = s["n"]
        if n < 2 or s["w"] <= 0:
            return {"n": int(n), "champion": None, "challenger": None, "difference": None,
                    "low": -math.inf, "high": math.inf}
        v0, wbar = s["r"] / n, s["w"] / n
        vc = s["wr"] / s["w"]
        a2 = (s["wwrr"] - 2 * vc * s["wwr"] + vc * vc * s["ww"]) / (wbar * wbar)
        ab = (s["wrr"] - (vc + v0) * s["wr"] + vc * v0 * s["w"]) / wbar
        b2 = s["rr"] - 2 * v0 * s["r"] + v0 * v0 * n
        var = max(0.0, (a2 - 2 * ab + b2) / n) / n  # variance of the difference
        diff = vc - v0
        tau2 = float(mixture_tau2(var, n, alpha, target_n))
        radius = float(cs_radius(var, tau2, alpha)) if var > 0 else math.inf
        return {"n": int(n), "champion": v0, "challenger": vc, "difference": diff,
                "low": diff - radius, "high": diff + radius}


class Rollout:
    """A challenger's rollout against the champion variant: shadow, steps, rollback.

    States: ``"shadow"`` (the challenger decides on every champion decision and learns from
    its log, serving nothing), ``"serving"`` (users whose salted hash falls below the
    step's share get the challenger's decisions), ``"promoted"`` (the last step, 1.0,
    reached) and ``"rolled_back"`` (the online A/B test found it worse; every user is back
    with the champion).

    Parameters
    ----------
    config
        The :class:`RolloutConfig`.
    champion
        The champion's variant name.
    learner
        The challenger's :class:`~engine.learner.Learner`.
    salt
        Salt of the user hash (the engine's: the same users move at every step).
    data_dir
        Where ``rollout.jsonl`` and ``rollout.json`` live (None: nothing written).
    wait_window
        The engine's wait window (a decision's time is its deadline less the window).

    Examples
    --------
    >>> from engine.learner import Learner
    >>> from policies import make
    >>> cfg = RolloutConfig({"policy": "uniform"}, min_events_per_step=2, check_every=2)
    >>> r = Rollout(cfg, "default", Learner(make("uniform", n_features=2)), "s", None, 10.0)
    >>> r.state, r.share
    ('shadow', 0.0)
    """

    def __init__(self, config: RolloutConfig, champion: str, learner, salt: str,
                 data_dir: str | None, wait_window: float):
        self.config = config
        self.champion = champion
        self.learner = learner
        self.salt = salt
        self.data_dir = data_dir
        self.wait_window = wait_window
        self.state = "shadow"
        self.stage = 0  # 0: shadow; i >= 1: steps[i - 1] served
        self.history: list[dict] = []
        self._gap = OffPolicyGap()
        self._ab = {"champion": VariantStats(), "challenger": VariantStats()}
        self._step_events = 0
        self._since_check = 0
        self._served_since: float | None = None

    # ---- deciding ----------------------------------------------------------------------
    @property
    def share(self) -> float:
        """The share of users the challenger serves now."""
        return self.config.steps[self.stage - 1] if self.state in ("serving", "promoted") else 0.0

    @property
    def active(self) -> bool:
        """Whether the challenger still decides (shadow or serving)."""
        return self.state in ("shadow", "serving", "promoted")

    def serves(self, user_id: str) -> bool:
        """Whether the challenger serves this user now (sticky: the salted hash)."""
        share = self.share
        return share >= 1.0 or (share > 0.0 and hash_unit(user_id, self.salt) < share)

    def act(self, phi: np.ndarray, mask: np.ndarray | None, users: Sequence[str],
            variants: list[str], probs: np.ndarray, versions: dict, names: dict) -> np.ndarray:
        """The challenger's probabilities (B, K) on the champion's features, one batched
        call; rows of users it serves replace the champion's in ``probs`` and are renamed in
        ``variants`` (with its version and name added to ``versions`` and ``names``)."""
        mine = self.learner.policy.act(phi, mask)
        served = [i for i, u in enumerate(users) if self.serves(u)]
        if served:
            probs[served] = mine[served]
            for i in served:
                variants[i] = CHALLENGER
            versions[CHALLENGER] = self.learner.version
            names[CHALLENGER] = type(self.learner.policy).__name__
        return mine

    # ---- learning and the gate -----------------------------------------------------------
    def observe(self, learned: Sequence[tuple], seqs: Sequence[int], now: float) -> None:
        """Learned rewards ``[(pending, value), ...]`` with their reward seqs: champion rows
        feed the off-policy estimate and the challenger's learning, served rows since the
        first step the online A/B statistics; the gate is evaluated every ``check_every``."""
        if not self.active:
            return
        since = -math.inf if self._served_since is None else self._served_since
        arms: dict[str, list[float]] = {"champion": [], "challenger": []}
        for (p, value), seq in zip(learned, seqs, strict=False):
            decided = p.deadline - self.wait_window
            if p.variant == CHALLENGER:
                self._step_events += 1
                if decided >= since:
                    arms["challenger"].append(value)
            elif p.variant == self.champion:
                if p.shadow is not None:
                    self._gap.add(p.shadow / p.propensity, value)
                    self.learner.add(p.phi, value, p.propensity, seq)
                    self._step_events += self.stage == 0
                if self._served_since is not None and decided >= since:
                    arms["champion"].append(value)
        for arm, values in arms.items():
            if values:
                self._ab[arm].update(values)
        self._since_check += len(learned)
        if self._since_check >= self.config.check_every:
            self.check(now)

    def ab(self) -> dict:
        """The online comparison since the first served step: each arm's n and mean, and
        the always-valid difference (challenger - champion) with its confidence sequence."""
        c, t = self._ab["champion"], self._ab["challenger"]
        out = {"champion": {"n": c.n, "mean": json_number(c.mean)},
               "challenger": {"n": t.n, "mean": json_number(t.mean)},
               "difference": None, "low": None, "high": None, "p_value": None}
        if c.n >= 2 and t.n >= 2:
            res = msprt(t.mean, t.var, t.n, c.mean, c.var, c.n, self.config.alpha)
            out.update(difference=json_number(res.diff), low=json_number(res.ci[0]),
                       high=json_number(res.ci[1]), p_value=json_number(res.p_value))
        return out

    def check(self, now: float) -> str | None:
        """Evaluate the gate: roll back if the online A/B test shows the challenger worse,
        else promote one step if enough events passed and the off-policy lower bound is
        above the margin. Returns the event logged (``"promote"``, ``"rollback"``) or None."""
        self._since_check = 0
        if self.state not in ("shadow", "serving"):
            return None
        cfg = self.config
        gap = self._gap.estimate(cfg.alpha)
        event = None
        ab = self.ab() if self.state == "serving" else None
        if ab is not None and ab["high"] is not None and ab["high"] < 0:
            event = "rollback"
            reason = (f"online A/B: challenger - champion {ab['difference']:+.4f}, "
                      f"confidence sequence upper bound {ab['high']:+.4f} < 0 "
                      f"(p = {ab['p_value']:.3g}); traffic back to the champion")
            self.state, self.stage = "rolled_back", 0
        elif self._step_events >= cfg.min_events_per_step and gap["low"] > cfg.margin:
            event = "promote"
            reason = (f"off-policy gain {gap['difference']:+.4f} over {gap['n']} champion "
                      f"decisions, {1 - cfg.alpha:.0%} lower bound {gap['low']:+.4f} > margin "
                      f"{cfg.margin:g}; {self._step_events} events in the step")
            self.stage += 1
            self.state = "promoted" if self.stage == len(cfg.steps) else "serving"
            if self._served_since is None:
                self._served_since = now
            self._step_events = 0
        if event is not None:
            self._log(event, reason, now, gap, ab)
        self.save_state()
        return event

    # ---- record ----------------------------------------------------------------------------
    def report(self) -> dict:
        """What ``GET /v1/rollout`` shows: state, share, settings, the off-policy estimate,
        the online A/B comparison and every step with its reason."""
        gap = self._gap.estimate(self.config.alpha)
        return {"state": self.state, "share": self.share, "stage": self.stage,
                "champion": self.champion, "settings": self.config.describe(),
                "events_in_step": self._step_events, "off_policy": _json_gap(gap),
                "online": self.ab(), "history": list(self.history)}

    def start(self, now: float, saved: dict | None) -> None:
        """Resume ``saved`` (a state saved for the same settings), else start in shadow."""
        if saved is not None:
            self.state, self.stage = saved["state"], int(saved["stage"])
            self._gap.sums = {k: float(v) for k, v in saved["gap"].items()}
            self._ab = {k: VariantStats.from_dict(v) for k, v in saved["ab"].items()}
            self._step_events = int(saved["step_events"])
            self._served_since = saved["served_since"]
            self.history = saved.get("history", [])
            return
        self._log("start", "challenger in shadow: it decides on every champion decision, "
                  "serves nothing and learns from the champion's log", now, None, None)
        self.save_state()

    def save_state(self) -> None:
        """Write the state (atomically: a temporary file renamed over the last)."""
        if self.data_dir is None:
            return
        state = {"settings": self.config.describe(), "state": self.state, "stage": self.stage,
                 "gap": self._gap.sums, "ab": {k: v.to_dict() for k, v in self._ab.items()},
                 "step_events": self._step_events, "served_since": self._served_since,
                 "history": self.history}
        path = Path(self.data_dir) / STATE_NAME
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    def _log(self, event: str, reason: str, now: float, gap: dict | None,
             ab: dict | None) -> None:
        """Append a step to the history and, durably (flushed and synced), to the log."""
        entry = {"ts": now, "event": event, "state": self.state, "share": self.share,
                 "reason": reason, "off_policy": None if gap is None else _json_gap(gap),
                 "online": ab}
        self.history.append(entry)
        if self.data_dir is None:
            return
        with open(Path(self.data_dir) / LOG_NAME, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _json_gap(gap: dict) -> dict:
    """An off-policy estimate ready for JSON (infinite bounds as None)."""
    return {k: v if k == "n" else json_number(v) for k, v in gap.items()}


def read_state(data_dir: str) -> dict | None:
    """A data directory's saved rollout state (None where it has none)."""
    path = Path(data_dir) / STATE_NAME
    return json.loads(path.read_text()) if path.is_file() else None


def open_rollout(cfg, n_features: int, store, data_dir: str | None, now: float) -> Rollout:
    """The engine's rollout (``cfg``: its :class:`~engine.config.EngineConfig`): the
    challenger's policy built (or loaded from the store, when the saved state is for the
    same settings) and the saved state resumed."""
    from engine.learner import Learner
    from policies import make

    rc: RolloutConfig = cfg.rollout
    champion = next(iter(cfg.variant_specs()))
    spec = rc.challenger
    policy = spec["policy"]
    if isinstance(policy, str):
        try:
            policy = make(policy, n_features=n_features, seed=cfg.seed + 104_729,
                          **dict(spec.get("params") or {}))
        except ValidationError as err:
            where = "rollout.challenger." + ("policy" if err.field == "policy"
                                              else f"params.{err.field}")
            raise ValidationError(where, err.reason, err.value) from None
    elif getattr(policy, "n_features", n_features) != n_features:
        raise ValidationError("rollout.challenger.policy", f"has n_features="
                              f"{policy.n_features} but the featurizer makes {n_features}")
    state = read_state(data_dir) if data_dir else None
    if state is not None and state.get("settings") != rc.describe():
        state = None  # saved for other settings: start again
    saved = store.load_policy(CHALLENGER)  # as of the last snapshot (not re-learned since)
    resumed = saved is not None and state is not None
    learner = Learner(pickle.loads(saved[2]) if resumed else policy, cfg.learn_batch)
    learner.learned_seq = saved[0] if resumed else 0
    rollout = Rollout(rc, champion, learner, cfg.salt, data_dir, cfg.wait_window)
    rollout.start(now, state)
    return rollout


def save_rollout(rollout: Rollout, store) -> None:
    """Save the challenger's policy and the rollout's state (at every engine snapshot)."""
    lrn = rollout.learner
    lrn.flush()
    store.save_policy(CHALLENGER, lrn.learned_seq, lrn.version, lrn.state())
    rollout.save_state()
