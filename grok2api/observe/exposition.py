"""Counters, gauges and histograms in the Prometheus text exposition format.

A few dozen lines of our own instead of a client library: the gateway exports
a handful of metrics from one process, needs no push gateway, no multiprocess
mode and no default collectors. Values live in plain dicts keyed by the tuple
of label values; every update is synchronous, so under Trio no lock is needed.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence

__all__ = [
    "CONTENT_TYPE",
    "Counter",
    "Gauge",
    "Histogram",
    "Metric",
    "render",
]

#: The media type of the text format, version 0.0.4.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[str, Mapping[str, str], float]


class Metric(abc.ABC):
    """A named family of samples, one per combination of label values."""

    kind = "untyped"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labels = tuple(labels)

    def _key(self, values: Sequence[str]) -> tuple[str, ...]:
        if len(values) != len(self.labels):
            raise ValueError(
                f"{self.name} takes labels {self.labels}, got {len(values)} values"
            )
        return tuple(values)

    @abc.abstractmethod
    def samples(self) -> Iterator[Sample]:
        """Every sample as ``(name, labels, value)``."""


class _OneValueMetric(Metric):
    """A metric holding one number per label set."""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        # Without labels there is one series, and it exists from the start.
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def value(self, *values: str) -> float:
        return self._values.get(self._key(values), 0.0)

    def samples(self) -> Iterator[Sample]:
        for key, value in sorted(self._values.items()):
            yield self.name, dict(zip(self.labels, key, strict=True)), value


class Counter(_OneValueMetric):
    """A value that only goes up; its name ends in ``_total``."""

    kind = "counter"

    def inc(self, *values: str, amount: float = 1.0) -> None:
        if amount < 0:
            raise ValueError(f"a counter cannot go down, got {amount}")
        key = self._key(values)
        self._values[key] = self._values.get(key, 0.0) + amount


class Gauge(_OneValueMetric):
    """A value that goes up and down, or is replaced wholesale."""

    kind = "gauge"

    def inc(self, *values: str, amount: float = 1.0) -> None:
        key = self._key(values)
        self._values[key] = self._values.get(key, 0.0) + amount

    def dec(self, *values: str, amount: float = 1.0) -> None:
        self.inc(*values, amount=-amount)

    def set(self, value: float, *values: str) -> None:
        self._values[self._key(values)] = value

    def replace(self, values: Mapping[tuple[str, ...], float]) -> None:
        """Set every sample at once; label sets not given disappear."""
        self._values = {self._key(key): value for key, value in values.items()}


class Histogram(Metric):
    """Observations counted into cumulative ``le`` buckets, with sum and count."""

    kind = "histogram"

    def __init__(
        self,
        name: str,
        help_text: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float],
    ) -> None:
        super().__init__(name, help_text, labels)
        if list(buckets) != sorted(set(buckets)) or not buckets:
            raise ValueError(f"buckets must be increasing, got {list(buckets)}")
        self.buckets = tuple(buckets)
        # Per label set: a count per bucket (not cumulative), the sum, the count.
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *values: str) -> None:
        key = self._key(values)
        counts, total = self._series.setdefault(
            key, ([0] * (len(self.buckets) + 1), [0.0])
        )
        index = next(
            (i for i, bound in enumerate(self.buckets) if value <= bound),
            len(self.buckets),
        )
        counts[index] += 1
        total[0] += value

    def samples(self) -> Iterator[Sample]:
        for key, (counts, total) in sorted(self._series.items()):
            labels = dict(zip(self.labels, key, strict=True))
            cumulative = 0
            for bound, count in zip([*self.buckets, math.inf], counts, strict=True):
                cumulative += count
                le = {**labels, "le": _number(bound)}
                yield f"{self.name}_bucket", le, cumulative
            yield f"{self.name}_sum", labels, total[0]
            yield f"{self.name}_count", labels, cumulative


def render(
    metrics: Iterable[Metric],
    extra_labels: Mapping[Metric, Mapping[str, str]] | None = None,
) -> str:
    """The exposition text of ``metrics``, each with its ``# HELP`` and
    ``# TYPE`` lines; ``extra_labels`` adds constant labels to some of them."""
    lines: list[str] = []
    for metric in metrics:
        extra = (extra_labels or {}).get(metric, {})
        lines.append(f"# HELP {metric.name} {_escape_help(metric.help)}")
        lines.append(f"# TYPE {metric.name} {metric.kind}")
        for name, labels, value in metric.samples():
            lines.append(f"{name}{_labels({**extra, **labels})} {_number(value)}")
    return "\n".join(lines) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    pairs = ",".join(f'{name}="{_escape_value(v)}"' for name, v in labels.items())
    return "{" + pairs + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    if value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return repr(value)
