"""The strict TOML table reader: typed values, errors naming file and key, unknown keys refused.

A loader asks a :class:`TableReader` for each key it knows; :meth:`TableReader.refuse_unknown` then refuses
any key nobody asked for, suggesting the closest known one (``[smpt]``: "did you mean `smtp`?").
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

from mailer.config.times import parse_duration
from mailer.errors import ConfigError
from mailer.zones import UnknownZoneError, canonical_zone_name, resolve_zone

# C0 controls (CR, LF, TAB among them), DEL, C1 controls and the Unicode line and paragraph separators.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def refuse_control_characters(path: str, key: str, value: str) -> None:
    """Raise ConfigError naming ``path`` and ``key`` when ``value`` holds a control character.

    For texts that reach a message header: a header field is one line (RFC 5322 sec. 2.2), so a line break
    in a title or a sender name would end the field and start another (header injection).
    """
    found = _CONTROL.search(value)
    if found:
        raise ConfigError(
            path,
            key,
            f"control character U+{ord(found.group()):04X} in {value!r}",
            "write it on one line without control characters: it goes into a message header",
        )


_TOML_FORMS: dict[type, str] = {
    str: 'write it in quotes: "..."',
    int: "write a whole number without quotes",
    float: "write a number without quotes",
    bool: "write true or false without quotes",
    list: "write a list in brackets: [...]",
    dict: "write a table: [name] on a line of its own, or { key = value }",
}
"""The fix a ConfigError gives for a value of the wrong TOML type, by the type expected (TOML 1.0)."""


class TableReader:
    """Typed access to one TOML table with errors that name the file and key."""

    def __init__(self, path: Path, data: dict[str, Any], prefix: str = "") -> None:
        self.path = path
        self.data = data
        self.prefix = prefix
        self.asked: set[str] = set()  # every key the loader looked for, present or not
        self.children: list[TableReader] = []

    def keys(self) -> list[str]:
        """The table's keys, for tables whose keys are names (regions, servers, countries): all are known."""
        self.asked.update(self.data)
        return list(self.data)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def refuse_unknown(self) -> None:
        """Raise ConfigError for the first key no loader asked for (a typo such as ``[smpt]`` or ``canceled``
        would otherwise be ignored without a word), naming the closest known key."""
        for key in self.data:
            if key not in self.asked:
                close = difflib.get_close_matches(key, sorted(self.asked), n=1)
                fix = (
                    f"did you mean `{close[0]}`?"
                    if close
                    else f"known here: {', '.join(sorted(self.asked)) or 'none'}"
                )
                raise self.fail(key, "unknown setting", fix)
        for child in self.children:
            child.refuse_unknown()

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def fail(self, name: str, problem: str, fix: str = "") -> ConfigError:
        return ConfigError(str(self.path), self.key(name), problem, fix)

    def get(self, name: str, kind: type, default: Any = ...) -> Any:
        self.asked.add(name)
        if name not in self.data:
            if default is ...:
                raise self.fail(name, "missing", f"add `{name} = ...`")
            return default
        value = self.data[name]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise self.fail(
                name,
                f"expected {kind.__name__}, got {type(value).__name__} {value!r}",
                _TOML_FORMS.get(kind, ""),
            )
        return value

    def table(self, name: str) -> TableReader:
        value = self.get(name, dict, {})
        child = TableReader(self.path, value, f"{self.prefix}{name}.")
        self.children.append(child)
        return child

    def strings(self, name: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(name, list, default)
        if not all(isinstance(item, str) for item in value):
            raise self.fail(name, "expected a list of strings")
        return tuple(value)

    def header_text(self, name: str, default: Any = ...) -> str:
        """A string that reaches a message header (subject, From, List-Id, DKIM-Signature): ConfigError
        when it holds CR, LF or another control character (see :func:`refuse_control_characters`)."""
        value: str = self.get(name, str, default)
        refuse_control_characters(str(self.path), self.key(name), value)
        return value

    def header_strings(self, name: str, default: Any = ...) -> tuple[str, ...]:
        """A list of strings each of which may reach a message header, checked as :meth:`header_text`."""
        values = self.strings(name, default)
        for value in values:
            refuse_control_characters(str(self.path), self.key(name), value)
        return values

    def zone(self, name: str, default: Any = ...) -> str:
        value = self.get(name, str, default)
        try:
            resolve_zone(value)
        except UnknownZoneError:
            raise self.fail(
                name, f"unknown time zone {value!r}", "use an IANA name like 'America/Sao_Paulo' or 'GMT-3'"
            ) from None
        return canonical_zone_name(value)

    def duration(self, name: str, default: Any = ...) -> Any:
        given = self.data.get(name)
        if isinstance(given, int | float) and not isinstance(given, bool):
            self.asked.add(name)
            raise self.fail(
                name,
                f"bad duration {given!r} (a bare number)",
                f"write it in quotes with its unit, e.g. '{given}s'",
            )
        value = self.get(name, str, default)
        if value is None:
            return None
        try:
            return parse_duration(value)
        except ValueError:
            raise self.fail(
                name, f"bad duration {value!r}", "write e.g. '3d', '12h', '90m' or '30s'"
            ) from None

    def interval(self, name: str, default: str) -> timedelta:
        """A duration that paces a loop or a lease, more than zero: ConfigError otherwise (a zero poll
        interval would spin, a zero lease would give a message being sent to a second worker)."""
        value: timedelta = self.duration(name, default)
        if value <= timedelta(0):
            raise self.fail(name, "must be more than 0", f"give a duration such as {default!r}")
        return value


def read_toml(path: Path) -> dict[str, Any]:
    """The parsed TOML file at ``path``; raises ConfigError when it is missing or not valid TOML."""
    if not path.is_file():
        raise ConfigError(
            str(path), "", "file not found", "create it or point MAILER_CONFIG at the config folder"
        )
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "", f"not valid TOML: {exc}", "fix the syntax at that line") from None
