"""Observability: request ids, statistics, the audit log and metrics.

The access-log wrapper (``grok2api.api.access_log``) turns every response
into a :class:`FinishedRequest` and hands it to the worker's
:class:`Recorder`, which counts it in the Prometheus metrics and buffers it
for the shared statistics and audit log in storage.
"""

from __future__ import annotations

from grok2api.observe.exposition import CONTENT_TYPE as METRICS_CONTENT_TYPE
from grok2api.observe.faults import FaultCountingPool
from grok2api.observe.metrics import GatewayMetrics, PoolGauges
from grok2api.observe.recorder import Recorder, RecorderStatistics
from grok2api.observe.requests import (
    FinishedRequest,
    is_recorded_route,
    new_request_id,
    route_label,
)

__all__ = [
    "METRICS_CONTENT_TYPE",
    "FaultCountingPool",
    "FinishedRequest",
    "GatewayMetrics",
    "PoolGauges",
    "Recorder",
    "RecorderStatistics",
    "is_recorded_route",
    "new_request_id",
    "route_label",
]
