"""A strict little parser of the Prometheus text format, for the tests.

It accepts only what the format allows (``# HELP``/``# TYPE`` comments,
samples with quoted, escaped label values and a float), raises on anything
else, and checks that every sample belongs to a family declared before it.
"""

from __future__ import annotations

import math
import re

import attrs

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{.*\}})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\["\\n])*)"(,|$)')
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count")}


@attrs.define
class Family:
    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[tuple[str, dict[str, str], float]] = attrs.Factory(list)

    def value(self, **labels: str) -> float:
        """The one sample of the family's own name whose labels include
        ``labels``; the sum when several match."""
        found = [
            v
            for name, have, v in self.samples
            if name == self.name and labels.items() <= have.items()
        ]
        assert found, f"no {self.name} sample with {labels}"
        return sum(found)


def parse(text: str) -> dict[str, Family]:
    assert text.endswith("\n"), "the exposition must end with a newline"
    families: dict[str, Family] = {}
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("# HELP "):
            name, _, help_text = line[7:].partition(" ")
            assert re.fullmatch(_NAME, name), where
            families.setdefault(name, Family(name)).help = help_text
        elif line.startswith("# TYPE "):
            name, _, kind = line[7:].partition(" ")
            assert kind in _TYPES, where
            family = families.setdefault(name, Family(name))
            assert not family.samples, f"TYPE after samples, {where}"
            family.type = kind
        else:
            match = _SAMPLE.match(line)
            assert match, where
            name, labels, value = match.groups()
            family = _family_of(families, name)
            assert family is not None, f"sample of an undeclared family, {where}"
            family.samples.append((name, _labels(labels or "", where), _float(value)))
    return families


def _family_of(families: dict[str, Family], name: str) -> Family | None:
    if name in families:
        return families[name]
    for family in families.values():
        suffixes = _SUFFIXES.get(family.type, ())
        if any(name == family.name + suffix for suffix in suffixes):
            return family
    return None


def _labels(text: str, where: str) -> dict[str, str]:
    if not text:
        return {}
    body = text[1:-1]
    labels: dict[str, str] = {}
    position = 0
    while position < len(body):
        match = _LABEL.match(body, position)
        assert match, f"bad labels at {position}, {where}"
        name, raw, _ = match.groups()
        assert name not in labels, f"repeated label {name}, {where}"
        labels[name] = re.sub(r"\\(.)", _unescape, raw)
        position = match.end()
    return labels


def _unescape(match: re.Match[str]) -> str:
    return "\n" if match.group(1) == "n" else match.group(1)


def _float(text: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    return special[text] if text in special else float(text)
