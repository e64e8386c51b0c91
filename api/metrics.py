"""Prometheus metrics: counters kept as requests happen, gauges read from the read side."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ledger.gate import STATUSES
from service.composition import Services


class LedgerMetrics:
    def __init__(self, services: Services) -> None:
        self.registry = CollectorRegistry()
        self.admissions = Counter(
            "ledger_admissions",
            "Admissions answered, by verdict",
            ["verdict"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "ledger_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route", "status"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        self.registry.register(_ReadSideCollector(services))
        # `labels()` checks and looks up its labels on every call (~3 us): the few children
        # there are (verdicts; method, route, status) are kept here once made.
        self._verdicts: dict[str, Any] = {}
        self._latencies: dict[tuple[str, str, str], Any] = {}

    def count_admissions(self, verdict: str, n: int) -> None:
        child = self._verdicts.get(verdict)
        if child is None:
            child = self._verdicts[verdict] = self.admissions.labels(verdict)
        child.inc(n)

    def _latency(self, method: str, route: str, status: str) -> Any:
        key = (method, route, status)
        child = self._latencies.get(key)
        if child is None:
            child = self._latencies[key] = self.latency.labels(method, route, status)
        return child

    def middleware(self, app: ASGIApp) -> ASGIApp:
        async def measure(scope: Any, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            started = time.perf_counter()
            status = 500

            async def remember_status(message: Message) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, remember_status)
            finally:
                route = scope.get("path_template") or "unmatched"
                self._latency(scope["method"], route, str(status)).observe(
                    time.perf_counter() - started
                )

        return measure


class _ReadSideCollector(Collector):
    """Pending unknowns, projection lag and windows by gate, read when scraped."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def collect(self) -> Iterator[Metric]:
        pending = GaugeMetricFamily("ledger_pending_unknown", "Identities whose publish is UNKNOWN")
        by_gate = GaugeMetricFamily("ledger_windows", "Windows by gate status", labels=["gate"])
        lag = GaugeMetricFamily(
            "ledger_projection_lag_events",
            "Events the projection has yet to apply",
            labels=["projection"],
        )
        total_pending, windows_by_gate = self.services.read.gauges()
        pending.add_metric([], float(total_pending))
        for gate in STATUSES:
            by_gate.add_metric([gate], float(windows_by_gate.get(gate, 0)))
        for row in self.services.runner.status():
            lag.add_metric([row["name"]], float(row["lag"]))
        yield pending
        yield by_gate
        yield lag
