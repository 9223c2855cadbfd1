"""Prometheus metrics of one app (a registry per app, so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest


class Metrics:
    """The service's counters and histograms, plus gauges read from the engine when scraped:
    records in quarantine, each policy's detected drifts and version."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("loopwise_http_requests", "HTTP requests",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("loopwise_http_request_seconds", "HTTP request latency",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5))
        self.decisions = Counter("loopwise_decisions", "decisions made", ["variant"],
                                 registry=self.registry)
        self.rewards = Counter("loopwise_rewards", "reward reports by join status", ["status"],
                               registry=self.registry)
        self.events = Counter("loopwise_events", "behaviour events", ["result"],
                              registry=self.registry)
        self.quarantined = Gauge("loopwise_quarantined_records", "acknowledged records the "
                                 "store could not write (see loopwise quarantine)",
                                 registry=self.registry)
        self.drifts = Gauge("loopwise_policy_drift_detections", "changes each policy's detector "
                            "found in its own prediction errors", ["variant"],
                            registry=self.registry)
        self.versions = Gauge("loopwise_policy_version", "policy version each variant decides "
                              "with", ["variant"], registry=self.registry)

    def render(self, engine) -> bytes:
        """The metrics text, the engine's gauges read first (call it holding its lock)."""
        self.quarantined.set(engine.health()["quarantined"] or 0)
        for variant, learner in engine.learners.items():
            self.drifts.labels(variant).set(getattr(learner.policy, "drift_detections", 0))
            self.versions.labels(variant).set(learner.version)
        return generate_latest(self.registry)
