"""The cattrs converter that turns plain TOML/JSON values into settings.

cattrs' default hooks coerce (``int("5")``, ``bool("false") is True``), which
would let a typo slip through as a silently wrong value. These hooks accept
only the native type (an integer is fine where a float is expected), and the
converter forbids keys the schema does not know.
"""

from __future__ import annotations

import typing
from typing import Any

import cattrs

converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)

#: What the structure hooks raise; the loader turns it into a problem line.
STRUCTURE_ERRORS = (TypeError, ValueError, cattrs.BaseValidationError)


def _strict_bool(value: Any, _type: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError("expected bool")
    return value


def _strict_int(value: Any, _type: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("expected int")
    return value


def _strict_float(value: Any, _type: type) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("expected float")
    return float(value)


def _strict_str(value: Any, _type: type) -> str:
    if not isinstance(value, str):
        raise TypeError("expected str")
    return value


def _is_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple


converter.register_structure_hook(bool, _strict_bool)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(str, _strict_str)
# Settings hold tuples so they stay immutable, but a TOML array or a JSON
# body is a list, and shown settings should read back the same way.
converter.register_unstructure_hook_func(
    _is_tuple, lambda value: [converter.unstructure(item) for item in value]
)


def structure_value(value: Any, tp: Any) -> Any:
    """Check and convert one setting's value to its field type.

    Raises:
        TypeError, ValueError, cattrs.BaseValidationError: the value does not
            fit ``tp``; see :data:`STRUCTURE_ERRORS`.
    """
    if _is_tuple(tp) and not isinstance(value, list | tuple):
        # cattrs would happily iterate a string into a tuple of characters.
        raise TypeError("expected an array")
    if typing.get_origin(tp) is dict and not isinstance(value, dict):
        raise TypeError("expected a table")
    return converter.structure(value, tp)


def describe_type(tp: Any) -> str:
    """A short name for a field type, as used in problem lines."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is tuple:
        return f"list of {describe_type(args[0])}"
    if origin is dict:
        return f"table of {describe_type(args[1])}"
    return getattr(tp, "__name__", str(tp))


def show_value(value: Any, limit: int = 60) -> str:
    """``repr`` of a value, shortened for a one-line message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
