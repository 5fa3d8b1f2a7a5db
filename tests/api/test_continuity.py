"""Conversation continuity (``chat.continue_conversations``) through a real
gateway and the emulator: which upstream endpoint each turn used, with what
body, and that the client always gets a normal answer."""

from __future__ import annotations

import base64
import math
import time
from types import SimpleNamespace
from typing import Any

import attrs
import openai
import pytest
import trio
import trio.testing

from grok2api.api.chat_request import ChatMessage, MediaPart
from grok2api.api.completion import Outcome
from grok2api.api.continuity import (
    Binding,
    binding_name,
    caller_identity,
    find_binding,
    remember_answer,
    split_at_last_answer,
)
from grok2api.config import Settings
from grok2api.emulator import expected_answer, token_id
from grok2api.errors import StorageUnavailable
from grok2api.storage import token_id_for
from tests.conftest import (
    API_KEY,
    Emulator,
    Gateway,
    GatewayFactory,
    start_gateway,
)

NEW = "/rest/app-chat/conversations/new"
ON = {"GROK2API_CHAT_CONTINUE_CONVERSATIONS": "true"}

Messages = list[dict[str, Any]]


@pytest.fixture
def continuing(gateway_factory: GatewayFactory, emulator: Emulator) -> Gateway:
    """A gateway with continuity on and two basic tokens."""
    for token in ("tok-a", "tok-b"):
        emulator.control.add_account(token)
    return gateway_factory(["tok-a", "tok-b"], **ON)


def ask(
    gateway: Gateway,
    messages: Messages,
    *,
    key: str = API_KEY,
    stream: bool = False,
    **options: Any,
) -> str:
    """Send ``messages``; return the answer text the client got."""
    with openai.OpenAI(base_url=gateway.api, api_key=key, max_retries=0) as client:
        if stream:
            chunks = client.chat.completions.create(
                model="grok-4", messages=messages, stream=True, **options
            )
            return "".join(c.choices[0].delta.content or "" for c in chunks)
        reply = client.chat.completions.create(
            model="grok-4", messages=messages, **options
        )
    return reply.choices[0].message.content or ""


def chats(emulator: Emulator) -> list[dict[str, Any]]:
    """Every chat request the emulator served or refused, oldest first."""
    return [
        record
        for record in emulator.control.requests(settled=True)
        if record["path"] == NEW or record["path"].endswith("/responses")
    ]


def responses_path(conversation_id: str) -> str:
    return f"/rest/app-chat/conversations/{conversation_id}/responses"


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def first_turn(
    gateway: Gateway, emulator: Emulator, **options: Any
) -> tuple[Messages, dict[str, Any]]:
    """Ask the opening question; return the history with the answer and the
    emulator's record of it."""
    messages = [user("Name a colour.")]
    answer = ask(gateway, messages, **options)
    assert answer == expected_answer("Name a colour.")
    *_, record = chats(emulator)
    assert record["path"] == NEW
    return [*messages, assistant(answer)], record


# -- continuing --------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "streamed"])
def test_second_turn_continues_the_conversation(
    continuing: Gateway, emulator: Emulator, stream: bool
) -> None:
    history, first = first_turn(continuing, emulator, stream=stream)

    answer = ask(continuing, [*history, user("And another?")], stream=stream)

    assert answer == expected_answer("And another?")
    _, second = chats(emulator)
    assert second["path"] == responses_path(first["conversation_id"])
    assert second["body"]["parentResponseId"] == first["response_id"]
    assert second["body"]["message"] == "And another?"
    assert second["token_id"] == first["token_id"]
    assert second["outcome"] == "completed"


def test_third_turn_continues_from_the_second(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, first = first_turn(continuing, emulator)
    second_answer = ask(continuing, [*history, user("Second?")], stream=True)
    history += [user("Second?"), assistant(second_answer)]

    third_answer = ask(continuing, [*history, user("Third?")])

    assert third_answer == expected_answer("Third?")
    _, second, third = chats(emulator)
    assert third["path"] == responses_path(first["conversation_id"])
    assert third["body"]["parentResponseId"] == second["response_id"]
    assert third["body"]["message"] == "Third?"


def test_later_turns_after_the_answer_are_flattened(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, _ = first_turn(continuing, emulator)

    ask(continuing, [*history, {"role": "system", "content": "Be brief."}, user("Go")])

    assert chats(emulator)[-1]["body"]["message"] == "system: Be brief.\n\nGo"


def test_whitespace_around_the_sent_back_answer_does_not_matter(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, _ = first_turn(continuing, emulator)
    history[-1] = assistant("\n  " + history[-1]["content"] + "  \n")

    ask(continuing, [*history, user("More?")])

    assert chats(emulator)[-1]["path"].endswith("/responses")


def test_usage_counts_the_whole_history_when_continuing(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, _ = first_turn(continuing, emulator)
    with openai.OpenAI(base_url=continuing.api, api_key=API_KEY) as client:
        reply = client.chat.completions.create(
            model="grok-4", messages=[*history, user("More?")]
        )

    assert chats(emulator)[-1]["path"].endswith("/responses")
    whole = f"user: Name a colour.\n\nassistant: {history[-1]['content']}\n\nMore?"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens == math.ceil(len(whole) / 4)


def test_only_the_new_turns_images_are_uploaded(
    continuing: Gateway, emulator: Emulator
) -> None:
    def image_turn(text: str, fill: bytes) -> dict[str, Any]:
        png = b"\x89PNG\r\n\x1a\n" + fill * 50
        url = "data:image/png;base64," + base64.b64encode(png).decode()
        return {
            "role": "user",
            "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}},
            ],
        }

    opening = image_turn("What is this?", b"first")
    answer = ask(continuing, [opening])
    ask(continuing, [opening, assistant(answer), image_turn("And this?", b"second")])

    first, second = chats(emulator)
    assert second["path"] == responses_path(first["conversation_id"])
    uploads = emulator.control.uploads()
    assert len(uploads) == 2
    latest = emulator.control.upload(second["body"]["fileAttachments"][0])
    assert latest["data"].endswith(b"second")
    assert latest["token_id"] == first["token_id"]


# -- starting afresh ---------------------------------------------------------


def whole_history(history: Messages, question: str) -> str:
    """The message a fresh conversation sends for ``history`` + ``question``."""
    turns = [f"{m['role']}: {m['content']}" for m in history]
    return "\n\n".join([*turns, question])


def test_setting_off_never_continues(gateway: Gateway, emulator: Emulator) -> None:
    history, _ = first_turn(gateway, emulator)

    answer = ask(gateway, [*history, user("Again?")])

    assert [r["path"] for r in chats(emulator)] == [NEW, NEW]
    expected = whole_history(history, "Again?")
    assert chats(emulator)[-1]["body"]["message"] == expected
    assert answer == expected_answer(expected)


def test_another_api_key_never_shares_a_conversation(
    continuing: Gateway, emulator: Emulator
) -> None:
    keys = []
    with continuing.admin() as admin:
        for _ in range(2):
            # The same name on purpose: a key's id tells callers apart.
            created = admin.post("/v1/admin/keys", json={"name": "team"})
            assert created.status_code == 201, created.text
            keys.append(created.json()["items"][0]["key"])
    alice, bob = keys

    messages = [user("Name a colour.")]
    history = [*messages, assistant(ask(continuing, messages, key=alice))]
    ask(continuing, [*history, user("Mine?")], key=bob)
    ask(continuing, [*history, user("Mine?")], key=API_KEY)
    ask(continuing, [*history, user("Mine?")], key=alice)

    paths = [r["path"] for r in chats(emulator)]
    assert paths[:3] == [NEW, NEW, NEW]
    assert paths[3] == responses_path(chats(emulator)[0]["conversation_id"])


def test_edited_answer_starts_afresh(continuing: Gateway, emulator: Emulator) -> None:
    history, _ = first_turn(continuing, emulator)
    history[-1] = assistant(history[-1]["content"] + " Actually, blue.")

    ask(continuing, [*history, user("Sure?")])

    last = chats(emulator)[-1]
    assert last["path"] == NEW
    assert last["body"]["message"] == whole_history(history, "Sure?")


def test_answer_cut_by_max_tokens_is_not_continued(
    continuing: Gateway, emulator: Emulator
) -> None:
    messages = [user("Name a colour.")]
    cut = ask(continuing, messages, max_tokens=2)
    assert cut and cut != expected_answer("Name a colour.")

    ask(continuing, [*messages, assistant(cut), user("Go on.")])

    assert [r["path"] for r in chats(emulator)] == [NEW, NEW]


def test_binding_expires(gateway_factory: GatewayFactory, emulator: Emulator) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], GROK2API_CHAT_CONVERSATION_TTL_SEC="1", **ON)
    history, _ = first_turn(gateway, emulator)
    time.sleep(1.2)

    ask(gateway, [*history, user("Still there?")])

    assert [r["path"] for r in chats(emulator)] == [NEW, NEW]


# -- falling back ------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["collected", "streamed"])
@pytest.mark.parametrize("failure", ["http_500", "inband_error", "forgotten"])
def test_refused_continuation_falls_back_to_the_whole_history(
    continuing: Gateway, emulator: Emulator, failure: str, stream: bool
) -> None:
    history, first = first_turn(continuing, emulator)
    if failure == "forgotten":
        emulator.control.forget_conversations()
    else:
        emulator.control.fault(failure.removeprefix("http_"), endpoint="continue")

    answer = ask(continuing, [*history, user("Hello?")], stream=stream)

    expected = whole_history(history, "Hello?")
    assert answer == expected_answer(expected)
    _, refused, fresh = chats(emulator)
    assert refused["path"] == responses_path(first["conversation_id"])
    assert (fresh["path"], fresh["body"]["message"]) == (NEW, expected)
    assert "parentResponseId" not in fresh["body"]
    # The fallback's own answer is continued next time.
    history += [user("Hello?"), assistant(answer)]
    ask(continuing, [*history, user("Next")])
    assert chats(emulator)[-1]["path"] == responses_path(fresh["conversation_id"])


def test_bound_token_rate_limited_upstream_falls_back_to_another_token(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, first = first_turn(continuing, emulator)
    bound = "tok-a" if first["token_id"] == token_id("tok-a") else "tok-b"
    emulator.control.add_account(bound, remaining=0)

    answer = ask(continuing, [*history, user("Quota?")])

    assert answer == expected_answer(whole_history(history, "Quota?"))
    _, refused, fresh = chats(emulator)
    assert (refused["path"], refused["status"]) == (
        responses_path(first["conversation_id"]),
        429,
    )
    assert fresh["path"] == NEW
    assert fresh["token_id"] != first["token_id"]
    assert continuing.tokens()[token_id_for(bound)]["state"] == "cooling"


def test_bound_token_without_quota_in_the_pool_is_not_asked(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, first = first_turn(continuing, emulator)
    bound = "tok-a" if first["token_id"] == token_id("tok-a") else "tok-b"
    emulator.control.add_account(bound, remaining=0)
    with continuing.admin() as admin:
        refreshed = admin.post(
            "/v1/admin/tokens/refresh", json={"ids": [token_id_for(bound)]}
        )
    assert refreshed.json()["results"][0]["remaining"] == 0

    answer = ask(continuing, [*history, user("Quota?")], stream=True)

    assert answer == expected_answer(whole_history(history, "Quota?"))
    _, fresh = chats(emulator)
    assert fresh["path"] == NEW
    assert fresh["token_id"] != first["token_id"]


def test_bound_token_disabled_starts_afresh(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, first = first_turn(continuing, emulator)
    bound = "tok-a" if first["token_id"] == token_id("tok-a") else "tok-b"
    with continuing.admin() as admin:
        admin.patch(
            f"/v1/admin/tokens/{token_id_for(bound)}", json={"status": "disabled"}
        )

    ask(continuing, [*history, user("Who?")])

    _, fresh = chats(emulator)
    assert fresh["path"] == NEW
    assert fresh["token_id"] != first["token_id"]


def test_model_the_bound_token_cannot_serve_starts_afresh(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-basic")
    emulator.control.add_account("tok-super", pool="super")
    gateway = gateway_factory(["tok-basic"], **ON)
    gateway.add_tokens(["tok-super"], pool="super")
    history, first = first_turn(gateway, emulator)
    assert first["token_id"] == token_id("tok-basic")

    with openai.OpenAI(base_url=gateway.api, api_key=API_KEY) as client:
        client.chat.completions.create(
            model="grok-4-heavy", messages=[*history, user("Heavier?")]
        )

    _, fresh = chats(emulator)
    assert (fresh["path"], fresh["token_id"]) == (NEW, token_id("tok-super"))


def test_client_errors_are_unchanged_when_continuing(
    continuing: Gateway, emulator: Emulator
) -> None:
    history, _ = first_turn(continuing, emulator)
    with continuing.client() as client:
        response = client.post(
            "/v1/chat/completions",
            json={"model": "no-such-model", "messages": [*history, user("x")]},
        )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found"
    assert len(chats(emulator)) == 1


# -- the binding name --------------------------------------------------------


KEY = b"k" * 64
HISTORY = (ChatMessage("user", "hi"), ChatMessage("assistant", "hello"))


def test_binding_name_depends_on_caller_text_and_media() -> None:
    name = binding_name(KEY, "key:1", HISTORY)
    assert name.startswith("conv:") and len(name) == len("conv:") + 64
    assert binding_name(KEY, "key:1", HISTORY) == name
    assert binding_name(KEY, "key:2", HISTORY) != name
    assert binding_name(b"other" * 8, "key:1", HISTORY) != name
    edited = (HISTORY[0], ChatMessage("assistant", "hey"))
    assert binding_name(KEY, "key:1", edited) != name
    assert (
        binding_name(KEY, "key:1", (ChatMessage("user", " hi\n"), HISTORY[1])) == name
    )
    with_image = ChatMessage("user", "hi", (MediaPart("m", "image", url="u1"),))
    other_image = ChatMessage("user", "hi", (MediaPart("m", "image", url="u2"),))
    assert binding_name(KEY, "key:1", (with_image, HISTORY[1])) != name
    assert binding_name(KEY, "key:1", (with_image, HISTORY[1])) != binding_name(
        KEY, "key:1", (other_image, HISTORY[1])
    )
    # The role is part of the name, not only the text.
    swapped = (ChatMessage("system", "hi"), HISTORY[1])
    assert binding_name(KEY, "key:1", swapped) != name


def test_caller_identity_prefers_the_managed_key() -> None:
    assert caller_identity({"grok2api.key_id": "k1", "grok2api.key_name": "ci"}) == (
        "key:k1"
    )
    assert caller_identity({"grok2api.key_name": "master"}) == "name:master"
    assert caller_identity({}) == "name:anonymous"
    assert caller_identity({"grok2api.key_name": "k1"}) != caller_identity(
        {"grok2api.key_id": "k1"}
    )


def test_split_at_last_answer() -> None:
    question = ChatMessage("user", "next")
    assert split_at_last_answer((*HISTORY, question)) == (HISTORY, (question,))
    assert split_at_last_answer(HISTORY) is None
    assert split_at_last_answer((question,)) is None


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[]",
        '{"conversation_id": "c", "response_id": "r"}',
        '{"conversation_id": "c", "response_id": 5, "token_id": "t"}',
        '{"conversation_id": "", "response_id": "r", "token_id": "t"}',
    ],
)
def test_unreadable_binding_is_ignored(text: str) -> None:
    assert Binding.from_json(text) is None


def test_binding_round_trips() -> None:
    binding = Binding("c", "r", "t")
    assert Binding.from_json(binding.to_json()) == binding


def test_binding_survives_a_restart_of_the_gateway(
    gateway_factory: GatewayFactory, emulator: Emulator
) -> None:
    emulator.control.add_account("tok-a")
    gateway = gateway_factory(["tok-a"], **ON)
    history, first = first_turn(gateway, emulator)
    assert gateway.stop() == 0

    # A new process shares the binding key only through storage.
    again = start_gateway(gateway.env, gateway.log_path)
    try:
        ask(again, [*history, user("Remember me?")])
    finally:
        again.stop()

    assert chats(emulator)[-1]["path"] == responses_path(first["conversation_id"])


# -- storage trouble never reaches the client --------------------------------


class FakeStorage:
    """Just the storage calls continuity makes; ``failure`` breaks the
    expiring-value calls: ``None`` works, ``"error"`` raises, ``"hang"``
    never answers."""

    def __init__(self, failure: str | None = None) -> None:
        self.failure = failure
        self.values: dict[str, tuple[str, float, float]] = {}

    async def put_value_if_absent(self, name: str, value: str) -> str:
        return "ab" * 32

    async def _trouble(self) -> None:
        if self.failure == "error":
            raise StorageUnavailable("storage is down")
        if self.failure == "hang":
            await trio.sleep_forever()

    async def get_expiring(self, name: str, now: float) -> str | None:
        await self._trouble()
        stored = self.values.get(name)
        return stored[0] if stored and now < stored[2] else None

    async def put_expiring(
        self, name: str, value: str, now: float, expires_at: float
    ) -> None:
        await self._trouble()
        self.values[name] = (value, now, expires_at)


def fake_gateway(storage: FakeStorage, ttl: float = 3600.0) -> Any:
    settings = Settings()
    chat = attrs.evolve(settings.chat, conversation_ttl_sec=ttl)
    return SimpleNamespace(storage=storage, settings=attrs.evolve(settings, chat=chat))


OUTCOME = Outcome("stop", {}, "tok-1", conversation_id="c1", response_id="r1")
QUESTION = (ChatMessage("user", "hi"),)
NEXT_TURN = (*QUESTION, ChatMessage("assistant", "hello"), ChatMessage("user", "?"))


async def test_remembered_answer_is_found_with_its_ttl() -> None:
    storage = FakeStorage()
    gateway = fake_gateway(storage, ttl=90)

    await remember_answer(gateway, "key:1", QUESTION, "hello", OUTCOME)

    ((value, now, expires_at),) = storage.values.values()
    assert expires_at - now == 90
    assert Binding.from_json(value) == Binding("c1", "r1", "tok-1")
    found = await find_binding(gateway, "key:1", NEXT_TURN)
    assert found == (Binding("c1", "r1", "tok-1"), (ChatMessage("user", "?"),))
    assert await find_binding(gateway, "key:2", NEXT_TURN) is None


@pytest.mark.parametrize(
    ("answer", "outcome"),
    [
        ("hello", attrs.evolve(OUTCOME, cut_short=True)),
        ("hello", attrs.evolve(OUTCOME, response_id=None)),
        ("hello", attrs.evolve(OUTCOME, conversation_id=None)),
        ("  ", OUTCOME),
    ],
    ids=["cut-short", "no-response-id", "no-conversation-id", "empty"],
)
async def test_answers_that_cannot_be_continued_are_not_remembered(
    answer: str, outcome: Outcome
) -> None:
    storage = FakeStorage()
    await remember_answer(fake_gateway(storage), "key:1", QUESTION, answer, outcome)
    assert storage.values == {}


@pytest.mark.parametrize("failure", ["error", "hang"])
async def test_storage_trouble_means_a_fresh_conversation(
    failure: str, autojump_clock: trio.testing.MockClock
) -> None:
    gateway = fake_gateway(FakeStorage(failure))

    await remember_answer(gateway, "key:1", QUESTION, "hello", OUTCOME)
    assert await find_binding(gateway, "key:1", NEXT_TURN) is None
