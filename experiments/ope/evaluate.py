"""Run a set of estimators on validated data: shared bootstrap, intervals, diagnostics."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from engine.errors import ValidationTypeError
from experiments.ope.base import Estimate, LoggedData, OPEInputError
from experiments.ope.bootstrap import (
    bootstrap_samples,
    check_bootstrap_args,
    combine,
    effective_sample_size,
    percentile_interval,
)
from experiments.ope.estimators import IPS, SNIPS, Estimator, Replay
from experiments.ope.model_based import DM, DR, DROS, SNDR, SwitchDR
from experiments.ope.report import OPEResult

#: Names accepted by :func:`make_estimator` (case-insensitive), with the parameter that an
#: optional ``:VALUE`` suffix sets.
ESTIMATORS: dict[str, tuple[type[Estimator], str | None]] = {
    "replay": (Replay, None), "ips": (IPS, "clip"), "snips": (SNIPS, None), "dm": (DM, None),
    "dr": (DR, None), "sndr": (SNDR, None), "switch-dr": (SwitchDR, "tau"),
    "dr-os": (DROS, "lam"),
}


def default_estimators(clip: float = 100.0, tau: float = 10.0, lam: float = 100.0
                       ) -> list[Estimator]:
    """Replay, IPS, IPS clipped at ``clip``, SNIPS, DM, DR, SNDR, Switch-DR(``tau``) and
    DR-OS(``lam``)."""
    return [Replay(), IPS(), IPS(clip=clip), SNIPS(), DM(), DR(), SNDR(), SwitchDR(tau),
            DROS(lam)]


def make_estimator(spec: str) -> Estimator:
    """An estimator from its name, optionally with its parameter: ``"dr"``, ``"ips:20"``
    (clipped at 20), ``"switch-dr:5"``, ``"dr-os:50"``.

    Examples
    --------
    >>> make_estimator("IPS:20").name, make_estimator("dr-os").name
    ('IPS(clip=20)', 'DR-OS(lambda=100)')
    """
    name, _, value = spec.strip().partition(":")
    entry = ESTIMATORS.get(name.strip().lower())
    if entry is None:
        raise OPEInputError("estimators", f"unknown estimator {spec!r}; choose from "
                            f"{', '.join(ESTIMATORS)} (optionally NAME:VALUE for ips, "
                            "switch-dr, dr-os)")
    cls, param = entry
    if not value:
        return cls()
    if param is None:
        raise OPEInputError("estimators", f"{name!r} takes no parameter (got {spec!r})")
    try:
        number = float(value)
    except ValueError:
        raise OPEInputError("estimators", f"{param} in {spec!r} must be a number") from None
    try:
        return cls(**{param: number})
    except (TypeError, ValueError) as err:
        raise OPEInputError("estimators", f"{spec!r}: {err}") from None


def resolve_estimators(estimators: Sequence[Estimator | str] | str | None) -> list[Estimator]:
    """None -> :func:`default_estimators`; a comma-separated string or a list of names and
    :class:`Estimator` objects -> that list."""
    if estimators is None:
        return default_estimators()
    if isinstance(estimators, str):
        estimators = [s for s in estimators.split(",") if s.strip()]
    out = []
    for e in estimators:
        if isinstance(e, str):
            out.append(make_estimator(e))
        elif isinstance(e, Estimator):
            out.append(e)
        else:
            raise ValidationTypeError("estimators", "each must be an Estimator or a name", e)
    if not out:
        raise OPEInputError("estimators", "the list is empty")
    return out


def diagnostics(d: LoggedData) -> dict:
    """Raw-weight diagnostics: Kish effective sample size, largest and mean weight (about 1
    when the propensities are right and the logging policy covers the target), and the
    share of rounds where the target gives the logged action probability 0."""
    w = d.weights()
    return {"ess": effective_sample_size(w), "max_weight": float(w.max()),
            "mean_weight": float(w.mean()),
            "zero_target_share": float((d.target_prob() == 0).mean())}


def evaluate(d: LoggedData, estimators: Sequence[Estimator | str] | None = None, *,
             n_bootstrap: int = 200, alpha: float = 0.05, seed: int = 0,
             refit: Callable[[np.ndarray], np.ndarray] | None = None) -> OPEResult:
    """Every estimator's value with a ``1 - alpha`` percentile bootstrap interval and
    diagnostics, as an :class:`~experiments.ope.report.OPEResult`.

    The same resamples of the rounds (drawn from ``default_rng(seed)``) serve every
    estimator. By default the reward model's predictions are held fixed, which is fast and
    right for the weighting estimators and (with cross-fitting) for DR/SNDR, but leaves the
    model's own estimation error out of DM's interval (too narrow). With ``refit`` (a
    function of the resampled round indices returning their estimated rewards, as
    :func:`~experiments.ope.run.run_ope_on_arrays` builds with ``refit_bootstrap=True``)
    the model is refit on every resample.

    With no ``estimated_rewards`` in ``d`` the default set drops the model-based
    estimators, while an explicit model-based estimator raises.

    Examples
    --------
    >>> import numpy as np
    >>> from experiments.ope import validate
    >>> d = validate([1, 0, 1, 1], [0, 1, 1, 0], [0.5, 0.8, 0.4, 0.5],
    ...              np.tile([[0.0], [1.0]], (4, 1, 1)))
    >>> result = evaluate(d, ["ips", "snips"], n_bootstrap=50)
    >>> result["IPS"].estimate, round(result["IPS"].ess, 3)
    (0.625, 1.8)
    """
    check_bootstrap_args(n_bootstrap, alpha)
    chosen = resolve_estimators(estimators)
    if estimators is None and d.estimated_rewards is None:
        chosen = [e for e in chosen if not e.needs_model]
    terms = [e.terms(d) for e in chosen]
    rng = np.random.default_rng(seed)
    if refit is None:
        samples = bootstrap_samples(terms, n_bootstrap, rng)
    else:
        samples = _refit_samples(d, chosen, refit, n_bootstrap, rng)
    diag = diagnostics(d)
    out = []
    for est, t, s in zip(chosen, terms, samples, strict=True):
        low, high = percentile_interval(s, alpha)
        v = est.effective_weights(d)
        ess = float(d.n_rounds) if v is None else effective_sample_size(v)
        method = "percentile bootstrap"
        if est.needs_model:
            method += ", reward model refit" if refit is not None else ", reward model fixed"
        out.append(Estimate(est.name, float(combine(*t)), low, high, ess, diag["max_weight"],
                            diag["mean_weight"], diag["zero_target_share"], d.n_rounds,
                            confidence=1 - alpha, extra={"interval": method}))
    return OPEResult(out, n_rounds=d.n_rounds, n_actions=d.n_actions, len_list=d.len_list,
                     n_bootstrap=n_bootstrap, alpha=alpha, refit=refit is not None)


def _refit_samples(d: LoggedData, chosen: list[Estimator], refit, n_bootstrap: int,
                   rng: np.random.Generator) -> np.ndarray:
    out = np.empty((len(chosen), n_bootstrap))
    for b in range(n_bootstrap):
        idx = rng.integers(d.n_rounds, size=d.n_rounds)
        sub = d.subset(idx, refit(idx))
        for j, est in enumerate(chosen):
            out[j, b] = combine(*est.terms(sub))
    return out
