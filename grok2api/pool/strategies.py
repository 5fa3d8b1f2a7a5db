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
            try, or ``None`` to decline them all. Leave it ``None`` to take
            the first token in ``order``: backends then pick and reserve in
            one atomic round trip.
        sample_size: how many candidates to ask for; ``None`` uses
            ``token.lease_sample_size``.
    """

    name: str
    order: CandidateOrder
    choose: Callable[[Sequence[TokenRecord]], int | None] | None = None
    sample_size: int | None = None


def _weighted(candidates: Sequence[TokenRecord]) -> int:
    weights = [max(token.available, 1) for token in candidates]
    return random.choices(range(len(candidates)), weights=weights)[0]


BUILTIN_STRATEGIES: tuple[SelectionStrategy, ...] = (
    SelectionStrategy("max_quota", CandidateOrder.MOST_QUOTA),
    SelectionStrategy("random", CandidateOrder.RANDOM),
    # Weighted by available quota within a random sample: a token with twice
    # the quota left is twice as likely to be chosen.
    SelectionStrategy("weighted", CandidateOrder.RANDOM, _weighted),
    SelectionStrategy("lru", CandidateOrder.LEAST_RECENTLY_USED),
)
