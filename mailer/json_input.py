"""JSON sent to the service from outside (API bodies, webhooks, provider events), read under one set of rules:
UTF-8 only, and nothing no store could keep (RFC 8259 leaves number size and string content to the reader)."""

from __future__ import annotations

import json
from typing import Any

MAX_DIGITS = 20  # a JSON integer's digits: any id, count or Unix time fits; Python refuses over 4300


class JsonInputError(ValueError):
    """A body that is not JSON this service takes; the message names the problem for the sender."""


def _integer(text: str) -> int:
    """A JSON integer, at most :data:`MAX_DIGITS` digits (JsonInputError otherwise)."""
    digits = len(text.lstrip("-"))
    if digits > MAX_DIGITS:
        raise JsonInputError(
            f"the body's JSON holds a number of {digits} digits: at most {MAX_DIGITS} are taken"
        )
    return int(text)


_NUL = "a NUL character (\\u0000)"
_SURROGATE = "a lone surrogate (\\ud800 to \\udfff, not a character)"


def _unstorable(text: str) -> str | None:
    """What in ``text`` no store keeps: a NUL (PostgreSQL's text refuses it), a lone surrogate (no UTF-8
    encodes it: every driver refuses it); None when nothing."""
    if "\x00" in text:
        return _NUL
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return _SURROGATE
    return None


def _printable(key: str) -> str:
    return key.replace("\x00", "?").encode("utf-8", "replace").decode("utf-8")


def _unstorable_at(value: Any, where: str) -> tuple[str, str] | None:
    """(what, place) of the first string (key or value) in ``value`` that :func:`_unstorable` refuses, or None."""
    stack = [(value, where)]
    while stack:
        item, place = stack.pop()
        if isinstance(item, str):
            problem = _unstorable(item)
            if problem:
                return problem, place
        elif isinstance(item, dict):
            for key, child in item.items():
                problem = _unstorable(key)
                if problem:
                    return problem, f"{place}.{_printable(key)}" if place else _printable(key)
                stack.append((child, f"{place}.{key}" if place else key))
        elif isinstance(item, list):
            stack.extend((child, f"{place}[{index}]") for index, child in enumerate(item))
    return None


def load_json(body: bytes | str, what: str = "the body") -> Any:
    """``body`` (UTF-8 bytes, or text) as JSON. Raises :class:`JsonInputError` naming the problem when it is
    not UTF-8 or not JSON, is nested too deeply, or holds what no store could keep: an integer of more than
    :data:`MAX_DIGITS` digits, a string holding a NUL character (\\u0000: PostgreSQL's text cannot hold it)
    or a lone surrogate (``"\\ud800"``: JSON escapes it, but it is no character and no UTF-8 encodes it).
    ``what`` names the document in the messages ("the body", "the SNS Message")."""
    try:
        text = body.decode("utf-8") if isinstance(body, bytes) else body
        value = json.loads(text, parse_int=_integer)
    except UnicodeDecodeError:
        raise JsonInputError(f"{what} is not UTF-8") from None
    except json.JSONDecodeError as exc:
        raise JsonInputError(
            f"{what} is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise JsonInputError(f"{what}'s JSON is nested too deeply") from None
    found = _unstorable_at(value, "")
    if found is not None:
        problem, place = found
        raise JsonInputError(f"{what}'s JSON holds {problem} in {place or what}: remove it")
    return value


__all__ = ["MAX_DIGITS", "JsonInputError", "load_json"]
