"""Prometheus metrics of one app (a registry per app, so tests can build several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
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

    def render(self) -> bytes:
        return generate_latest(self.registry)
