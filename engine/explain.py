"""Why this item: a logged decision's chosen item, its score taken apart by feature group.

For a policy with linear weights ``theta`` (LinUCB, LinTS, epsilon-greedy, SquareCB: every
:class:`policies.linear.LinearPolicy`) a candidate's score is ``theta . x``. The chosen
item's lead over the average candidate, ``theta . (x_chosen - mean_k x_k)``, is a sum of
``theta_j * (x_chosen_j - mean_j)`` over features ``j``; these terms are summed per group
of the featurizer's :attr:`~engine.featurizer.Featurizer.feature_names`:

- ``profile interests``: topic, tag and keyword affinity, topic exposure, user features;
- ``latent factors``: the latent-factor score;
- ``context``: item and profile features crossed with request context (``a*b`` names);
- ``item features``: the candidate's own numeric features.

The bias and the user features are the same for every candidate, so they never separate
the chosen item from the others (their terms are 0). ``theta`` is the variant's current
policy: learning after the decision moves it, so the answer names that version. A policy
without linear weights (neural, VW, uniform) gets the decision and no attribution, with the
reason.

Examples
--------
>>> import numpy as np
>>> names = ["bias", "topic_affinity", "latent_score", "item_0", "item_0*mobile"]
>>> phi = np.array([[1, 0.9, 0.2, 1.0, 1.0], [1, 0.1, 0.4, 0.0, 0.0]])
>>> groups = attribute(np.array([0.5, 2.0, 1.0, 0.3, -0.1]), phi, 0, names)
>>> [(g["group"], round(g["contribution"], 3)) for g in groups]
[('profile interests', 0.8), ('item features', 0.15), ('context', -0.05), ('latent factors', -0.1)]
"""

from __future__ import annotations

import numpy as np


def group_of(name: str) -> str:
    """The feature group of one of the featurizer's feature names."""
    if "*" in name:
        return "context"
    if name == "latent_score":
        return "latent factors"
    if name.startswith("item_"):
        return "item features"
    if name == "bias":
        return "bias"
    return "profile interests"


def attribute(theta: np.ndarray, phi: np.ndarray, chosen: int, names: list[str]) -> list[dict]:
    """Per group (largest push first), the chosen row's ``theta_j * (x_j - mean_j)`` summed,
    with each feature's value, the candidates' mean, weight and term. Bias left out."""
    x = phi[chosen]
    mean = phi.mean(axis=0)
    terms = theta * (x - mean)
    groups: dict[str, dict] = {}
    for j, name in enumerate(names):
        g = group_of(name)
        if g == "bias":
            continue
        entry = groups.setdefault(g, {"group": g, "contribution": 0.0, "features": []})
        entry["contribution"] += float(terms[j])
        entry["features"].append({"name": name, "value": float(x[j]), "mean": float(mean[j]),
                                  "weight": float(theta[j]), "contribution": float(terms[j])})
    return sorted(groups.values(), key=lambda g: -g["contribution"])


def explain(engine, record: dict, phi: np.ndarray) -> dict:
    """A logged decision (``record`` and its candidates' features ``phi``, as
    :func:`engine.insight.decision` reads them) with the attribution of its chosen item
    under its variant's current policy (see the module docstring)."""
    learner = engine.learners.get(record["variant"])
    policy = getattr(learner, "policy", None)
    names = engine.featurizer.feature_names
    theta = getattr(policy, "theta", None)
    if theta is None or phi.shape[1] != len(names):
        kind = type(policy).__name__ if policy is not None else "no policy"
        return {"decision": record, "attribution": None,
                "reason": f"{kind} has no linear weights to take its score apart"}
    theta = np.asarray(theta, dtype=float)
    k = [c["id"] for c in record["candidates"]].index(record["chosen"])
    groups = attribute(theta, phi, k, names)
    scores = phi @ theta
    return {"decision": record, "attribution": {
        "method": "linear: theta_j * (x_chosen_j - mean over candidates of x_j)",
        "policy_version": int(learner.version), "groups": groups,
        "score": float(scores[k]), "mean_score": float(scores.mean()),
        "summary": summary(record["chosen"], groups)}}


def summary(chosen: str, groups: list[dict]) -> str:
    """One sentence a person reads: what pushed the chosen item up, and what held it back."""
    up = [g["group"] for g in groups if g["contribution"] > 1e-9]
    down = [g["group"] for g in groups if g["contribution"] < -1e-9]
    if not up and not down:
        return f"{chosen} scored like the average candidate: it was picked by exploration."
    text = f"{chosen} was pushed up by {', '.join(up)}" if up else \
        f"nothing pushed {chosen} above the average candidate"
    return text + (f"; held back by {', '.join(down)}." if down else ".")
