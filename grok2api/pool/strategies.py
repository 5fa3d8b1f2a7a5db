"""Token selection strategies, and the four the gateway ships.

A strategy never sees the whole pool. It names the index the storage backend
should walk (:class:`~grok2api.storage.CandidateOrder`), gets a small sample of
eligible tokens in that order, and chooses one. The backend then reserves the
choice conditionally, so a strategy cannot break the quota ledger however it
chooses, and selection costs the same with 1,000 tokens as with 100,000.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import attrs

from grok2api.storage import CandidateOrder, TokenRecord

__all__ = ["BUILTIN_STRATEGIES", "SelectionStrategy"]


@attrs.frozen
class SelectionStrategy:
    """How to pick a token among eligible candidates.

    Attributes:
        name: what ``token.selection_strategy`` names to choose it.
        order: the index the backend walks to produce candidates.
        choose: given the candidates (never empty), the index of the one to
            try, or ``None`` to decline them all.
        sample_size: how many candidates to ask for; ``None`` uses
            ``token.lease_sample_size``.
    """

    name: str
    order: CandidateOrder
    choose: Callable[[Sequence[TokenRecord]], int | None]
    sample_size: int | None = None


def _most_quota(candidates: Sequence[TokenRecord]) -> int:
    # Ties are common (a fresh pool has equal quotas everywhere); choosing
    # among them at random spreads concurrent requests instead of having
    # every worker race for the same first row.
    best = max(token.available for token in candidates)
    tied = [i for i, token in enumerate(candidates) if token.available == best]
    return random.choice(tied)


def _first(candidates: Sequence[TokenRecord]) -> int:
    return 0


def _weighted(candidates: Sequence[TokenRecord]) -> int:
    weights = [max(token.available, 1) for token in candidates]
    return random.choices(range(len(candidates)), weights=weights)[0]


BUILTIN_STRATEGIES: tuple[SelectionStrategy, ...] = (
    SelectionStrategy("max_quota", CandidateOrder.MOST_QUOTA, _most_quota),
    SelectionStrategy("random", CandidateOrder.RANDOM, _first),
    SelectionStrategy("weighted", CandidateOrder.RANDOM, _weighted),
    SelectionStrategy("lru", CandidateOrder.LEAST_RECENTLY_USED, _first),
)
