"""The tag filter and the answer shaper, fed the way an upstream stream arrives."""

from __future__ import annotations

import itertools

import pytest

from grok2api.api.shaping import AnswerShaper
from grok2api.filters import FilterChain, TagFilter

TAGS = ["xaiartifact", "xai:tool_usage_card", "grok:render"]


async def run_filter(pieces: list[str], tags: list[str] = TAGS) -> str:
    chain = FilterChain([TagFilter(tags)])
    out = [await chain.feed(piece) for piece in pieces]
    return "".join(out) + await chain.finish()


def splits(text: str) -> list[list[str]]:
    """Every way to cut ``text`` into two or three pieces."""
    cuts = []
    for i, j in itertools.combinations(range(1, len(text)), 2):
        cuts.append([text[:i], text[i:j], text[j:]])
    return cuts


async def test_tag_filter_removes_elements_split_anywhere() -> None:
    text = 'Hi <grok:render card_id="c1" type="x">card</grok:render>there'
    for pieces in splits(text):
        assert await run_filter(pieces) == "Hi there", pieces


async def test_tag_filter_removes_self_closing_and_mixed_case_tags() -> None:
    text = 'a<XaiArtifact id="1"/>b<xai:tool_usage_card><x>q</x></xai:tool_usage_card>c'
    for pieces in splits(text)[::7]:
        assert await run_filter(pieces) == "abc"


async def test_tag_filter_keeps_lookalikes_and_plain_angle_brackets() -> None:
    text = "1 < 2 and <grokking> is fine, <grok:renderer> too"
    for pieces in splits(text)[::11]:
        assert await run_filter(pieces) == text


async def test_tag_filter_drops_an_element_that_never_closes() -> None:
    assert await run_filter(["ok <grok:render a='1'>", "dangling"]) == "ok "


async def test_tag_filter_with_no_tags_is_transparent() -> None:
    assert (
        await run_filter(["<grok:render>x</grok:render>"], tags=[])
        == "<grok:render>x</grok:render>"
    )


@pytest.mark.parametrize("stop", [["END"], ["xx", "END"]])
async def test_shaper_stops_before_a_stop_string_split_across_deltas(
    stop: list[str],
) -> None:
    shaper = AnswerShaper(FilterChain([]), show_reasoning=True, stop=tuple(stop))
    out = []
    for piece in ["Hello E", "N", "D world"]:
        out.append((await shaper.content(piece)).content)
    assert shaper.finish_reason == "stop"
    out.append((await shaper.finish()).content)
    assert "".join(out) == "Hello "
    assert shaper.finish_reason == "stop"


async def test_shaper_releases_a_held_partial_stop_at_the_end() -> None:
    shaper = AnswerShaper(FilterChain([]), show_reasoning=True, stop=("STOP",))
    first = await shaper.content("almost ST")
    last = await shaper.finish()
    assert first.content + last.content == "almost ST"
    assert shaper.finish_reason == "stop"


async def test_shaper_cuts_at_max_tokens_with_finish_reason_length() -> None:
    shaper = AnswerShaper(FilterChain([]), show_reasoning=True, max_tokens=2)
    emitted = (await shaper.content("abcdef")).content + (
        await shaper.content("ghijkl")
    ).content
    assert emitted == "abcdefgh"  # two tokens of four characters
    assert shaper.finish_reason == "length"
    assert (await shaper.content("more")).content == ""


async def test_shaper_hides_reasoning_but_counts_it_in_usage() -> None:
    shaper = AnswerShaper(FilterChain([]), show_reasoning=False)
    assert not await shaper.reasoning("thinking hard")
    await shaper.content("answer")
    await shaper.finish()
    usage = shaper.usage("question")
    assert usage["completion_tokens_details"] == {"reasoning_tokens": 4}
    assert usage["completion_tokens"] == 4 + 2
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
