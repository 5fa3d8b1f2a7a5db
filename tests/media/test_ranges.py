"""Parsing a Range header against a file's size."""

from __future__ import annotations

import pytest

from grok2api.api.media_routes import parse_range
from grok2api.errors import ApiError


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-99", (0, 99)),
        ("bytes=-100", (900, 999)),
        ("bytes=-5000", (0, 999)),
        ("bytes=500-", (500, 999)),
        ("bytes=990-5000", (990, 999)),
        ("bytes=999-999", (999, 999)),
        ("bytes=0-" + "9" * 19, (0, 999)),
        ("bytes=-" + "9" * 40, (0, 999)),
    ],
)
def test_a_single_range_is_served(header: str, expected: tuple[int, int]) -> None:
    assert parse_range(header, 1000) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=0-1,5-6",
        "items=0-10",
        "bytes=10-5",
        "bytes=-",
        "bytes=a-b",
        "bytes=0-" + "9" * 101,
    ],
)
def test_what_is_not_a_single_range_serves_the_whole_file(header: str | None) -> None:
    assert parse_range(header, 1000) is None


@pytest.mark.parametrize(
    "header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0", "bytes=" + "9" * 40 + "-"]
)
def test_a_range_outside_the_file_is_a_416(header: str) -> None:
    with pytest.raises(ApiError) as refused:
        parse_range(header, 1000)
    assert refused.value.status == 416
    assert refused.value.headers == {"Content-Range": "bytes */1000"}


def test_any_range_of_an_empty_file_is_a_416() -> None:
    with pytest.raises(ApiError):
        parse_range("bytes=-10", 0)
