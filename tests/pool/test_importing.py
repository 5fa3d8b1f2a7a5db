"""Token imports in the formats operators bring."""

from __future__ import annotations

import json

import pytest

from grok2api.pool.importing import ImportedToken, parse_token_import


def test_plain_lines_skip_blanks_and_comments() -> None:
    text = "# my tokens\naaa\n\n  bbb  \n"
    assert parse_token_import(text, "super") == [
        ImportedToken("aaa", "super"),
        ImportedToken("bbb", "super"),
    ]


def test_reference_token_file() -> None:
    text = json.dumps(
        {
            "ssoBasic": [
                {
                    "token": "b1",
                    "status": "active",
                    "quota": 80,
                    "tags": ["nsfw"],
                    "note": "x",
                },
                "b2",
            ],
            "ssoSuper": [{"token": "s1"}],
        }
    )
    assert parse_token_import(text) == [
        ImportedToken("b1", "basic", ("nsfw",), "x"),
        ImportedToken("b2", "basic"),
        ImportedToken("s1", "super"),
    ]


def test_json_list_and_tokens_object() -> None:
    assert parse_token_import('["a", {"token": "b", "pool": "super"}]') == [
        ImportedToken("a", "basic"),
        ImportedToken("b", "super"),
    ]
    assert parse_token_import('{"tokens": ["c"], "pool": "super"}') == [
        ImportedToken("c", "super")
    ]


@pytest.mark.parametrize(
    "text", ['{"ssoGold": ["a"]}', "[1, 2]", '{"basic": "a"}', "[broken"]
)
def test_bad_imports_say_why(text: str) -> None:
    with pytest.raises(ValueError):
        parse_token_import(text)


def test_a_bad_line_is_named_by_its_line_in_the_text_given() -> None:
    text = "\n\n# pasted from a note\ngood-token\nbad token with spaces\n"
    with pytest.raises(ValueError, match=r"\(line 5\)"):
        parse_token_import(text)
