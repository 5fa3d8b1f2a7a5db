"""``/v1/public/voice/token``: a LiveKit access token for a Grok voice session.

The gateway asks the upstream (``POST /rest/livekit/tokens``) for a token on
one of the pool's accounts and hands it to the client with the LiveKit
server's URL (``voice.livekit_url``). The client joins that server itself with
the LiveKit SDK; the audio never passes through the gateway. The session is
described by ``voice``, ``personality`` (or custom ``instructions``) and
``speed``, read from the query string of a ``GET`` or the JSON object of a
``POST``.

A voice token spends no quota, so its lease costs nothing, but the token is
chosen like for any request (basic accounts first, then super) and goes
through the same failover: a refused token counts against itself and another
is tried. The route sits under ``/v1/``, so it takes the API key like the
OpenAI routes.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

import attrs
from quart import Blueprint, Response, request

from grok2api.api.failover import AttemptProgress, with_failover
from grok2api.api.http import json_response, read_json_body
from grok2api.errors import ApiError
from grok2api.gateway import current_gateway
from grok2api.models import BASIC, SUPER, ModelSpec
from grok2api.storage import Lease

__all__ = [
    "PERSONALITIES",
    "VOICES",
    "VoiceOptions",
    "parse_voice_options",
    "voice_routes",
]

voice_routes = Blueprint("voice", __name__, url_prefix="/v1/public/voice")

#: The voices the web app offers.
VOICES = ("ara", "eve", "leo", "rex", "sal", "gork")
#: The personalities the web app offers; ``custom`` comes with instructions.
PERSONALITIES = (
    "assistant",
    "custom",
    "therapist",
    "storyteller",
    "kids_story_time",
    "kids_trivia_game",
    "meditation",
    "doc",
    "unhinged",
    "sexy",
    "motivation",
    "conspiracy",
    "romantic",
    "argumentative",
)
MIN_SPEED = 0.5
MAX_SPEED = 2.0
MAX_INSTRUCTIONS = 4000
# float() alone would also take "inf", "1_0" and " 1 ".
_DECIMAL = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,15})?")

#: What a voice session asks of the pool. It is not in the model catalogue:
#: no client names it, and its cost of 0 leaves every quota as it was.
VOICE_SESSION = ModelSpec("voice", None, None, 0, (BASIC, SUPER))


@attrs.frozen
class VoiceOptions:
    """A voice session as the client asked for it."""

    voice: str = "ara"
    #: ``None`` when custom instructions replace the personality.
    personality: str | None = "assistant"
    instructions: str | None = None
    speed: float = 1.0

    def session_payload(self) -> dict[str, Any]:
        """The session description the upstream reads (as a JSON string)."""
        payload: dict[str, Any] = {
            "voice": self.voice,
            "personality": self.personality,
            "playback_speed": self.speed,
            "enable_vision": False,
            "turn_detection": {"type": "server_vad"},
        }
        if self.instructions is not None:
            payload["instructions"] = self.instructions
            payload["is_raw_instructions"] = True
        return payload


def parse_voice_options(values: Mapping[str, Any], *, from_query: bool) -> VoiceOptions:
    """Validate the options of a token request.

    Args:
        values: the query arguments, or the JSON object of a POST.
        from_query: the values are query text (``speed`` is then parsed).

    Raises:
        ApiError: 400 naming the first bad option.
    """
    voice = _choice(values.get("voice"), "voice", VOICES, "ara")
    instructions = _instructions(values.get("instructions"))
    if instructions is not None:
        if values.get("personality") not in (None, "custom"):
            raise ApiError(
                400,
                "'instructions' replace the personality; leave 'personality' out "
                "or set it to 'custom'.",
                code="invalid_value",
                param="personality",
            )
        personality = None
    else:
        personality = _choice(
            values.get("personality"), "personality", PERSONALITIES, "assistant"
        )
        if personality == "custom":
            raise ApiError(
                400,
                "The 'custom' personality needs 'instructions'.",
                code="missing_value",
                param="instructions",
            )
    speed = _speed(values.get("speed"), from_query)
    return VoiceOptions(voice, personality, instructions, speed)


@voice_routes.route("/token", methods=["GET", "POST"])
async def voice_token() -> Response:
    if request.method == "POST":
        body = await read_json_body(optional=True)
        if body is not None and not isinstance(body, dict):
            raise ApiError(
                400,
                "Send a JSON object of voice options.",
                param="body",
                code="invalid_json",
            )
        options = parse_voice_options(body or {}, from_query=False)
    else:
        options = parse_voice_options(request.args, from_query=True)
    request.scope["grok2api.stream"] = False
    # TODO: a key limited to some models may still ask for voice tokens;
    # key limits have no notion of voice yet.
    gateway = current_gateway()
    livekit_url = gateway.settings.voice.livekit_url
    upstream_body = {
        "sessionPayload": json.dumps(options.session_payload()),
        "requestAgentDispatch": False,
        "livekitUrl": livekit_url,
        "params": {"enable_markdown_transcript": "true"},
    }

    async def ask(lease: Lease, progress: AttemptProgress) -> tuple[str, str]:
        answer = await gateway.upstream.livekit_token(lease.secret, upstream_body)
        progress.upstream_accepted = True
        return lease.token_id, str(answer["token"])

    token_id, livekit_token = await with_failover(gateway, VOICE_SESSION, ask)
    request.scope["grok2api.token_id"] = token_id
    return json_response(
        {
            "token": livekit_token,
            "url": livekit_url,
            "voice": options.voice,
            "personality": options.personality,
            "speed": options.speed,
        },
        # The token admits its holder to a session on the account; no cache
        # between here and the client may keep it.
        headers={"Cache-Control": "no-store"},
    )


def _choice(value: Any, name: str, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if isinstance(value, str) and value in choices:
        return value
    raise ApiError(
        400,
        f"'{name}' must be one of {', '.join(choices)}.",
        code="invalid_value",
        param=name,
    )


def _instructions(value: Any) -> str | None:
    if value is None:
        return None
    text = value.strip() if isinstance(value, str) else ""
    if not text or len(value) > MAX_INSTRUCTIONS:
        raise ApiError(
            400,
            f"'instructions' must be text of 1 to {MAX_INSTRUCTIONS} characters.",
            code="invalid_value",
            param="instructions",
        )
    return text


def _speed(value: Any, from_query: bool) -> float:
    if value is None:
        return 1.0
    speed = math.nan
    if from_query and isinstance(value, str) and _DECIMAL.fullmatch(value):
        speed = float(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        # Compared before float(): a JSON integer may be too large for one.
        speed = float(value) if MIN_SPEED <= value <= MAX_SPEED else math.nan
    # NaN fails both comparisons, so it is refused with the rest.
    if not MIN_SPEED <= speed <= MAX_SPEED:
        raise ApiError(
            400,
            f"'speed' must be a number from {MIN_SPEED} to {MAX_SPEED}.",
            code="invalid_value",
            param="speed",
        )
    return speed
