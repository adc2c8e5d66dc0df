"""Server metrics in the Prometheus text format (version 0.0.4), without a client library.

Counters and histograms keyed by label values; one lock guards updates, which are a few
additions per request. Paths are route templates (never raw URLs), so label sets stay few.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Sequence

LabelValues = tuple[str, ...]
# Seconds: a rank call on CPU takes ~1-10 ms; the tail buckets catch stalls.
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    pairs = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        pairs.append(extra)
    return "{" + ",".join(pairs) + "}" if pairs else ""


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    """A monotonically increasing count per label set."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for labels, value in sorted(self.values.items()):
            lines.append(f"{self.name}{_labels(self.label_names, labels)} {_number(value)}")
        return lines


class Gauge(Counter):
    """A value that is set, per label set."""

    def set(self, *labels: str, value: float) -> None:
        self.values[labels] = value

    def clear(self) -> None:
        self.values.clear()

    def render(self) -> list[str]:
        lines = super().render()
        lines[1] = f"# TYPE {self.name} gauge"
        return lines


class Histogram:
    """Observations counted into cumulative buckets, per label set."""

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()
    ) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self.bounds = tuple(sorted(buckets))
        self.series: dict[LabelValues, tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        counts, totals = self.series.setdefault(labels, ([0] * (len(self.bounds) + 1), [0.0]))
        counts[bisect.bisect_left(self.bounds, value)] += 1
        totals[0] += value

    def render(self) -> list[str]:
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for labels, (counts, totals) in sorted(self.series.items()):
            running = 0
            for bound, count in zip((*self.bounds, float("inf")), counts, strict=True):
                running += count
                le = "+Inf" if bound == float("inf") else _number(bound)
                tag = _labels(self.label_names, labels, 'le="' + le + '"')
                lines.append(f"{self.name}_bucket{tag} {running}")
            tag = _labels(self.label_names, labels)
            lines.append(f"{self.name}_sum{tag} {totals[0]!r}")
            lines.append(f"{self.name}_count{tag} {running}")
        return lines


class ServingMetrics:
    """The server's metrics; every method is safe to call from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = Counter(
            "dinrec_requests_total", "HTTP requests served.", ("method", "path", "status")
        )
        self.errors = Counter(
            "dinrec_request_errors_total",
            "Requests answered with an error status (client: 4xx, server: 5xx).",
            ("path", "kind"),
        )
        self.latency = Histogram(
            "dinrec_request_duration_seconds", "Time from request to response.",
            LATENCY_BUCKETS, ("path",),
        )
        self.batch = Histogram(
            "dinrec_batch_size", "Rows scored in one forward pass (candidates or score rows).",
            BATCH_BUCKETS, ("endpoint",),
        )
        self.cold_starts = Counter(
            "dinrec_cold_starts_total", "Rank calls for users unknown to the store."
        )
        self.events = Counter("dinrec_events_total", "Behavior events appended to the store.")
        self.skipped = Counter(
            "dinrec_store_values_skipped_total",
            "Stored values the model served cannot take, left out of a rank call (behavior: "
            "skipped; category: a candidate's category taken as unknown).", ("kind",),
        )
        self.reloads = Counter(
            "dinrec_model_reloads_total", "Model reload attempts.", ("result",)
        )
        self.model = Gauge(
            "dinrec_model_info", "The model being served (value 1).", ("version", "backend")
        )

    def request(self, method: str, path: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests.inc(method, path, str(status))
            self.latency.observe(seconds, path)
            if status >= 400:
                self.errors.inc(path, "server" if status >= 500 else "client")

    def scored(self, endpoint: str, rows: int) -> None:
        with self._lock:
            self.batch.observe(float(rows), endpoint)

    def count(self, counter: Counter, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            counter.inc(*labels, amount=amount)

    def serving(self, version: str, backend: str) -> None:
        with self._lock:
            self.model.clear()
            self.model.set(version, backend, value=1.0)

    def render(self) -> str:
        with self._lock:
            lines: list[str] = []
            for metric in (self.requests, self.errors, self.latency, self.batch,
                           self.cold_starts, self.events, self.skipped, self.reloads,
                           self.model):
                lines += metric.render()
        return "\n".join(lines) + "\n"
