"""A third-party selection strategy, packaged as a developer would ship one.

``alphabetical`` always picks the token whose note sorts first, which makes its
effect easy to observe from the outside.
"""

from __future__ import annotations

from collections.abc import Sequence

from grok2api import CandidateOrder, SelectionStrategy, TokenRecord, hookimpl


def _lowest_note(candidates: Sequence[TokenRecord]) -> int:
    return min(range(len(candidates)), key=lambda i: candidates[i].note)


@hookimpl
def register_selection_strategies(host: object) -> Sequence[SelectionStrategy]:
    # Sample generously: the choice is only meaningful if every token is seen.
    return [
        SelectionStrategy(
            "alphabetical", CandidateOrder.MOST_QUOTA, _lowest_note, sample_size=64
        )
    ]
