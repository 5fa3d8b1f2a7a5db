"""The model catalogue: public model ids, their upstream mapping, cost and pools.

The table is the union of the reference README's model table and the models its
code knew (``grok-4.20-beta``, ``grok-imagine-1.0-edit``). ``cost`` is in units
of the local quota ledger; ``pools`` lists the pools that may serve a model, in
the order they are tried.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

import attrs

__all__ = ["BASIC", "SUPER", "ModelCatalog", "ModelKind", "ModelSpec", "POOLS"]

BASIC = "basic"
SUPER = "super"
POOLS = (BASIC, SUPER)


class ModelKind(enum.Enum):
    CHAT = "chat"
    IMAGE = "image"
    IMAGE_EDIT = "image_edit"
    VIDEO = "video"


@attrs.frozen
class ModelSpec:
    """One public model and how the upstream is asked for it."""

    id: str
    upstream_name: str | None
    upstream_mode: str | None
    cost: int
    pools: tuple[str, ...]
    kind: ModelKind = ModelKind.CHAT
    #: The upstream always thinks for this model (reasoning tokens arrive).
    thinking: bool = False


def _chat(
    model_id: str, name: str, mode: str, cost: int = 1, **extra: object
) -> ModelSpec:
    pools = extra.pop("pools", (BASIC, SUPER))
    return ModelSpec(model_id, name, mode, cost, pools, ModelKind.CHAT, **extra)  # type: ignore[arg-type]


_BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    _chat("grok-3", "grok-3", "MODEL_MODE_GROK_3"),
    _chat("grok-3-mini", "grok-3", "MODEL_MODE_GROK_3_MINI_THINKING", thinking=True),
    _chat("grok-3-thinking", "grok-3", "MODEL_MODE_GROK_3_THINKING", thinking=True),
    _chat("grok-4", "grok-4", "MODEL_MODE_GROK_4"),
    _chat("grok-4-fast", "grok-4-1-thinking-1129", "MODEL_MODE_FAST"),
    _chat(
        "grok-4-mini", "grok-4-mini", "MODEL_MODE_GROK_4_MINI_THINKING", thinking=True
    ),
    _chat("grok-4-thinking", "grok-4", "MODEL_MODE_GROK_4_THINKING", thinking=True),
    _chat("grok-4-expert", "grok-4", "MODEL_MODE_EXPERT", 4, thinking=True),
    _chat(
        "grok-4-heavy", "grok-4", "MODEL_MODE_HEAVY", 4, pools=(SUPER,), thinking=True
    ),
    _chat("grok-4.1", "grok-4-1-thinking-1129", "MODEL_MODE_GROK_4_1_THINKING"),
    _chat(
        "grok-4.1-mini",
        "grok-4-1-thinking-1129",
        "MODEL_MODE_GROK_4_1_MINI_THINKING",
        thinking=True,
    ),
    _chat("grok-4.1-fast", "grok-4-1-thinking-1129", "MODEL_MODE_FAST"),
    _chat(
        "grok-4.1-thinking",
        "grok-4-1-thinking-1129",
        "MODEL_MODE_GROK_4_1_THINKING",
        4,
        thinking=True,
    ),
    _chat(
        "grok-4.1-expert",
        "grok-4-1-thinking-1129",
        "MODEL_MODE_EXPERT",
        4,
        thinking=True,
    ),
    _chat("grok-4.20-beta", "grok-420", "MODEL_MODE_GROK_420"),
    ModelSpec("grok-imagine-1.0", None, None, 4, (BASIC, SUPER), ModelKind.IMAGE),
    ModelSpec(
        "grok-imagine-1.0-edit",
        "imagine-image-edit",
        None,
        4,
        (BASIC, SUPER),
        ModelKind.IMAGE_EDIT,
    ),
    ModelSpec(
        "grok-imagine-1.0-video", "grok-3", None, 4, (BASIC, SUPER), ModelKind.VIDEO
    ),
)


class ModelCatalog:
    """Looks up models by public id or operator-defined alias."""

    def __init__(
        self,
        models: Iterable[ModelSpec] = _BUILTIN_MODELS,
        aliases: Mapping[str, str] = {},
    ) -> None:
        self._models = {model.id: model for model in models}
        self._aliases = dict(aliases)
        for alias, target in self._aliases.items():
            if target not in self._models:
                raise ValueError(f"alias {alias!r} points at unknown model {target!r}")

    def get(self, model_id: str) -> ModelSpec | None:
        """The spec for a public id or alias, or None when there is none."""
        target = self._aliases.get(model_id, model_id)
        return self._models.get(target)

    def public_ids(self) -> list[str]:
        """Every id a client may ask for: the models, then the aliases."""
        return [*self._models, *self._aliases]

    def __contains__(self, model_id: object) -> bool:
        return isinstance(model_id, str) and self.get(model_id) is not None
