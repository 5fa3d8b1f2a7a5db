"""Background batch jobs over many tokens, and the account settings they make.

Jobs (:mod:`~grok2api.jobs.runner`) refresh quota, enable NSFW content or
clear upstream assets for chosen tokens in the background, with their state
in storage (:mod:`~grok2api.jobs.store`) so every worker can report on and
cancel any job. :mod:`~grok2api.jobs.birth_dates` keeps the birth dates the
operator records for the NSFW setting.
"""

from __future__ import annotations

from grok2api.jobs.birth_dates import BirthDates, parse_birth_date
from grok2api.jobs.runner import JOB_KINDS, JobRunner, job_limits, job_runner
from grok2api.jobs.store import JobRecord, JobStore, TokenResult

__all__ = [
    "JOB_KINDS",
    "BirthDates",
    "JobRecord",
    "JobRunner",
    "JobStore",
    "TokenResult",
    "job_limits",
    "job_runner",
    "parse_birth_date",
]
