"""Personalisation by substitution: a step's parts rendered once with markers for the personal values, then
filled in for each recipient.

Rendering three Jinja2 templates costs about 0.2 ms a message, most of a sending worker's time. Between the
recipients of one step, session, language and time zone only a few values differ: :data:`PERSONAL`
(the greeting name and the signed personal links). The renderer renders such a group once with a
:class:`Marker` in place of each non-empty personal value, splits the output at the markers
(:func:`pieces`), and per recipient joins the pieces with the values (:func:`fill`): HTML-escaped where the
template escaped them, as they are elsewhere. The ``wrap`` filter block runs after the values are in, as in
a normal render (:data:`WRAP_START` ... :data:`WRAP_END` mark its text meanwhile).

That gives exactly the normal render only when a template uses the personal values in ways that do not look
inside them. :func:`substitutable` checks this on the templates' syntax trees (the parts, their layouts and
whatever they include or import), and allows only:

- printing a value as it is: ``{{ greeting_name }}`` (escaped in an HTML part, and substitution escapes too);
- in a plain-text part, printing it through ``isolate`` or ``ltr``, which only look at whether it is empty;
- testing it: ``{% if greeting_name %}``, ``x if v else y``, ``v is defined`` (the cache key records which
  values are absent, empty or not);
- copying it: ``{% set link = rsvp_yes_url if rsvp_yes_url is defined else registration_url %}``, the copy
  then being checked the same way.

Any other use (``recipient.name``, ``greeting_name | upper``, a comparison, a macro argument, a filter block
other than ``wrap``) makes the renderer render that template set per message, as before.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import jinja2
from jinja2 import meta, nodes
from markupsafe import escape

from mailer.compose.localise import _HANGING, wrap_text

#: The context values that differ between recipients of one step, session, language and zone.
PERSONAL = ("greeting_name", "unsubscribe_url", "rsvp_yes_url", "rsvp_no_url")
#: Context values no substitutable template may use at all (``_marked`` is set in marked renders only).
FORBIDDEN = frozenset({"recipient", "_marked"})

WRAP_START, WRAP_END = "\ue803", "\ue804"  # around the text of a {% filter wrap %} block, until it is wrapped
_START, _RAW_END, _HTML_END = "\ue800", "\ue801", "\ue802"
_WRAP_LINE = "\ue805"  # before a line of a wrap block that holds a marker, until the line ends (WRAP_END)
_MARKER = re.compile("(\ue800[\ue900-\ue9ff][\ue801\ue802])")
_PRIVATE = re.compile("[\ue800-\ue805\ue900-\ue9ff]")
_WRAP_REGION = re.compile(f"{WRAP_START}([^{WRAP_START}{WRAP_END}]*){WRAP_END}")
_WRAP_LINES = re.compile(f"{_WRAP_LINE}([^{WRAP_END}]*){WRAP_END}")
_ESCAPED = re.compile("[&<>'\"]")  # what markupsafe.escape replaces
_TRUTH_TESTS = frozenset({"defined", "undefined"})
_TEXT_FILTERS = frozenset({"isolate", "ltr"})  # text parts only: they look at emptiness, nothing else

#: A part split at its markers: text, or (index in PERSONAL, True when HTML-escaped).
Piece = str | tuple[int, bool]


class Marker(str):
    """Stands for personal value number ``index`` while a template renders: prints as three private-use
    characters (U+E800, U+E900 + index, U+E801), the last one U+E802 when HTML-escaped (``__html__``)."""

    def __new__(cls, index: int) -> Marker:
        marker = super().__new__(cls, f"{_START}{chr(0xE900 + index)}{_RAW_END}")
        marker.escaped = f"{_START}{chr(0xE900 + index)}{_HTML_END}"
        return marker

    escaped: str

    def __html__(self) -> str:
        return self.escaped


def fits(values: Mapping[str, object]) -> bool:
    """False when a personal value holds a character of the markers' private-use range (it would be taken
    for a marker): such a message renders on its own."""
    return not any(_PRIVATE.search(str(value)) for value in values.values())


def presence(values: Mapping[str, object]) -> tuple[int, ...]:
    """Per :data:`PERSONAL` name: 0 absent from ``values``, 1 empty, 2 set: the part of the cache key that
    decides which branches of ``{% if %}`` and ``is defined`` a template takes."""
    return tuple(0 if name not in values else 2 if values[name] else 1 for name in PERSONAL)


def marked(values: Mapping[str, object]) -> dict[str, object]:
    """The personal context for the one render of a group: a :class:`Marker` for each non-empty value,
    empty values as they are, absent ones left out."""
    return {
        name: Marker(i) if values[name] else values[name] for i, name in enumerate(PERSONAL) if name in values
    }


def pieces(text: str) -> tuple[Piece, ...] | None:
    """``text`` split at its markers; None when it holds a broken marker or other private-use character
    from the markers' range (the template then renders per message).

    Lines of ``wrap`` blocks are wrapped here, except those holding a marker: :func:`fill` wraps those
    (:func:`mailer.compose.localise.wrap_text` wraps each line on its own, so this is the same text).
    """
    text = _WRAP_REGION.sub(lambda match: _wrap_unmarked(match.group(1)), text)
    if WRAP_START in text or text.count(WRAP_END) != text.count(_WRAP_LINE):  # a wrap block in another one
        return None
    out: list[Piece] = []
    for n, part in enumerate(_MARKER.split(text)):
        if n % 2:
            out.append((ord(part[1]) - 0xE900, part[2] == _HTML_END))
        elif _PRIVATE.search(part.replace(_WRAP_LINE, "").replace(WRAP_END, "")):
            return None
        elif part:
            out.append(part)
    return tuple(out)


def fill(parts: tuple[Piece, ...], values: Mapping[str, object]) -> str:
    """The part for one recipient: markers replaced by ``values`` (escaped where marked so), then every
    ``wrap`` block wrapped (:func:`mailer.compose.localise.wrap_text`)."""
    out: list[str] = []
    for piece in parts:
        if isinstance(piece, str):
            out.append(piece)
        else:
            value = str(values[PERSONAL[piece[0]]])
            out.append(str(escape(value)) if piece[1] else value)
    text = "".join(out)
    if _WRAP_LINE in text:
        text = _WRAP_LINES.sub(lambda match: wrap_text(match.group(1)), text)
    return text


@dataclass(frozen=True, eq=False)
class Layout:
    """A part's pieces as lines: ``shared[0] + line 0 + shared[1] + line 1 + ... + shared[-1]`` is the part,
    where ``lines`` are the templates of the whole lines holding a personal value (their pieces, and True when
    the line is one ``wrap`` region, to be wrapped as a whole) and ``shared`` the text around them, the same for
    every recipient: ``shared[0]`` is "" or ends with a line break, the others start with one (the last is ""
    when the part ends with a personal line). ``cache`` holds what a writer derives from it once
    (:mod:`mailer.compose.wire`: the encoded shared lines), for as long as the render group is kept."""

    shared: tuple[str, ...]
    lines: tuple[tuple[tuple[Piece, ...], bool], ...]
    cache: dict[str, object] = field(default_factory=dict)
    #: Per line, its texts around the values and the slots of the values, in order (slots 0-3: the values of
    #: :data:`PERSONAL` as they are, 4-7: HTML-escaped): ``texts[0] + slot 0 + texts[1] + ... + texts[-1]``.
    formats: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...] = ()
    escapes: bool = False  # whether a line prints an HTML-escaped value
    #: Wrapped lines with stand-ins for their values (see :func:`_wrap_row`), by line and value lengths.
    wrapped: dict[tuple[int, ...], tuple[str, int]] = field(default_factory=dict)


class Filled:
    """One recipient's part made from a :class:`Layout`: ``lines`` its personal lines filled in (and wrapped;
    one may hold line breaks after wrapping), ``text`` the whole part (what :func:`fill` gives)."""

    __slots__ = ("layout", "lines", "text")

    def __init__(self, layout: Layout, lines: tuple[str, ...], text: str) -> None:
        self.layout = layout
        self.lines = lines
        self.text = text


def layout(parts: tuple[Piece, ...]) -> Layout:
    """``parts`` (from :func:`pieces`) as a :class:`Layout`."""
    rows: list[list[Piece]] = [[]]
    for piece in parts:
        if isinstance(piece, str):
            first, *more = piece.split("\n")
            if first:
                rows[-1].append(first)
            rows.extend([line] if line else [] for line in more)
        else:
            rows[-1].append(piece)
    runs: list[list[str]] = [[]]
    lines: list[tuple[tuple[Piece, ...], bool]] = []
    for row in rows:
        if all(isinstance(piece, str) for piece in row):
            runs[-1].append("".join(row))  # type: ignore[arg-type]
            continue
        lines.append(_line_template(row))
        runs.append([])
    if not lines:
        return Layout(("\n".join(runs[0]),), ())
    shared = ["".join(f"{line}\n" for line in runs[0])]
    shared += ["\n" + "".join(f"{line}\n" for line in run) for run in runs[1:-1]]
    shared.append("\n" + "\n".join(runs[-1]) if runs[-1] else "")
    formats = tuple(_format(row) for row, _ in lines)
    escapes = any(slot >= 4 for _, used in formats for slot in used)
    return Layout(tuple(shared), tuple(lines), formats=formats, escapes=escapes)


def _format(row: tuple[Piece, ...]) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """A line's pieces as texts around value slots (see :attr:`Layout.formats`)."""
    texts, slots, text = [], [], ""
    for piece in row:
        if isinstance(piece, str):
            text += piece
        else:
            texts.append(text)
            slots.append(piece[0] + 4 * piece[1])
            text = ""
    texts.append(text)
    return tuple(texts), tuple(slots)


def _line_template(row: list[Piece]) -> tuple[tuple[Piece, ...], bool]:
    """A personal line's pieces, and True when the line is one wrap region (its marks then left out)."""
    text = "".join(piece for piece in row if isinstance(piece, str))
    first, last = row[0], row[-1]
    if (
        isinstance(first, str)
        and isinstance(last, str)
        and first.startswith(_WRAP_LINE)
        and last.endswith(WRAP_END)
        and text.count(_WRAP_LINE) == 1
        and text.count(WRAP_END) == 1
    ):
        inner = [first[1:], *row[1:-1], last[:-1]] if len(row) > 1 else [first[1:-1]]
        return tuple(piece for piece in inner if piece != ""), True
    return tuple(row), False


def fill_layout(part: Layout, values: Mapping[str, object]) -> Filled:
    """:func:`fill` of the pieces ``part`` was made from, with its personal lines apart (:class:`Filled`)."""
    if not part.lines:
        return Filled(part, (), part.shared[0])
    slots = [str(values[name]) if name in values else "" for name in PERSONAL]
    if part.escapes:
        slots += [str(escape(value)) if _ESCAPED.search(value) else value for value in slots]
    lines: list[str] = []
    for (texts, used), (_, wrapped) in zip(part.formats, part.lines, strict=True):
        if len(used) == 1:
            line = texts[0] + slots[used[0]] + texts[1]
        else:
            out = [*texts, *(slots[slot] for slot in used)]
            out[0::2] = texts
            out[1::2] = [slots[slot] for slot in used]
            line = "".join(out)
        if wrapped:
            line = _wrap_row(part, len(lines), texts, used, slots, line)
        elif _WRAP_LINE in line:
            line = _WRAP_LINES.sub(lambda match: wrap_text(match.group(1)), line)
        lines.append(line)
    joined = [*part.shared, *lines]
    joined[0::2] = part.shared
    joined[1::2] = lines
    return Filled(part, tuple(lines), "".join(joined))


def _wrap_row(
    part: Layout, number: int, texts: tuple[str, ...], used: tuple[int, ...], slots: list[str], line: str
) -> str:
    """``wrap_text(line)`` for personal line ``number`` of ``part`` (``line`` is ``texts`` around the values
    of the ``used`` ``slots``), made from the same line wrapped once with a stand-in for each value
    (private-use characters, as many as the value's).

    :func:`mailer.compose.localise.wrap_text` looks at a line's length, its hanging indent (the length of
    ``_HANGING``'s match), its leading blanks and where its spaces and tabs are, never at what its words
    hold: for values without a space, tab or line break and a hanging indent of the same length (checked
    here), it breaks the stand-in line at the same places, and the values go back where their stand-ins are."""
    values = [slots[slot] for slot in used]
    if not all(values) or any(" " in value or "\t" in value or "\n" in value for value in values):
        return wrap_text(line)
    key = (number, *map(len, values))
    kept = part.wrapped.get(key)
    if kept is None:  # slot k stands in as U+E910 + k (a value holds none: see fits)
        stand_ins = [chr(0xE910 + slot) * len(slots[slot]) for slot in used]
        out = [*texts, *stand_ins]
        out[0::2] = texts
        out[1::2] = stand_ins
        stand_in = "".join(out)
        if len(part.wrapped) >= 256:
            part.wrapped.clear()
        kept = part.wrapped[key] = (wrap_text(stand_in), _hang(stand_in))
    if kept[1] != _hang(line):
        return wrap_text(line)
    wrapped = kept[0]
    for slot in set(used):
        wrapped = wrapped.replace(chr(0xE910 + slot) * len(slots[slot]), slots[slot])
    return wrapped


def _hang(line: str) -> int:
    match = _HANGING.match(line)
    return len(match.group(0)) if match else 0


def _wrap_unmarked(block: str) -> str:
    return "\n".join(
        f"{_WRAP_LINE}{line}{WRAP_END}" if _START in line else wrap_text(line) for line in block.split("\n")
    )


@jinja2.pass_context
def wrap_filter(context: jinja2.runtime.Context, text: str) -> str:
    """The ``wrap`` filter: :func:`mailer.compose.localise.wrap_text`, or, in a marked render, the text between
    :data:`WRAP_START` and :data:`WRAP_END` to be wrapped once the values are in."""
    if context.get("_marked"):
        return f"{WRAP_START}{text}{WRAP_END}"
    return wrap_text(text)


def substitutable(env: jinja2.Environment, names: list[str]) -> bool:
    """True when the templates ``names``, with everything they extend, include or import, use the personal
    values only in the ways listed in the module docstring. A template that cannot be read or parsed, or
    that names another template by a variable, gives False."""
    seen: set[str] = set()
    queue = list(names)
    while queue:
        name = queue.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            source = env.loader.get_source(env, name)[0] if env.loader else ""
            tree = env.parse(source, name)
        except jinja2.TemplateError:
            return False
        referenced = list(meta.find_referenced_templates(tree))
        if any(reference is None for reference in referenced):
            return False
        queue.extend(str(reference) for reference in referenced)
        autoescape = bool(env.autoescape(name) if callable(env.autoescape) else env.autoescape)
        if not _uses_are_plain(tree, autoescape):
            return False
    return True


def _uses_are_plain(tree: nodes.Template, autoescape: bool) -> bool:
    parents = {id(child): node for node in _walk(tree) for child in node.iter_child_nodes()}
    for node in tree.find_all((nodes.FilterBlock, nodes.EvalContextModifier)):
        if (
            not isinstance(node, nodes.FilterBlock)
            or node.filter.name != "wrap"
            or autoescape
            or node.filter.args
        ) and any(isinstance(n, nodes.Name) and n.name in (*PERSONAL, *FORBIDDEN) for n in _walk(node)):
            return False
    personal = set(PERSONAL)
    while True:  # until no new copies ({% set alias = personal %}) are found
        aliases: set[str] = set()
        for name in tree.find_all(nodes.Name):
            if name.ctx != "load" or name.name not in personal | FORBIDDEN:
                continue
            if name.name in FORBIDDEN or _inside_callable(name, parents):
                return False
            use = _use(name, parents, autoescape)
            if use is None:
                return False
            aliases |= use
        if aliases <= personal:
            return True
        personal |= aliases


def _use(node: nodes.Node, parents: dict[int, nodes.Node], autoescape: bool) -> set[str] | None:
    """How the value of ``node`` is used: None when not allowed, else the names it is copied to."""
    parent = parents.get(id(node))
    if isinstance(parent, nodes.Output):
        return set()
    if isinstance(parent, nodes.Test) and parent.node is node and parent.name in _TRUTH_TESTS:
        return set()
    if isinstance(parent, nodes.If) and parent.test is node:
        return set()
    if isinstance(parent, nodes.Not) and isinstance(parents.get(id(parent)), (nodes.If, nodes.CondExpr)):
        grand = parents[id(parent)]
        return set() if grand.test is parent else None  # type: ignore[attr-defined]
    if isinstance(parent, nodes.CondExpr):
        return set() if parent.test is node else _use(parent, parents, autoescape)
    if (
        isinstance(parent, nodes.Filter)
        and parent.node is node
        and parent.name in _TEXT_FILTERS
        and not autoescape
    ):
        if parent.args or parent.kwargs or parent.dyn_args or parent.dyn_kwargs:
            return None
        return _use(parent, parents, autoescape)
    if isinstance(parent, nodes.Assign) and parent.node is node and isinstance(parent.target, nodes.Name):
        return {parent.target.name}
    return None


def _inside_callable(node: nodes.Node, parents: dict[int, nodes.Node]) -> bool:
    """True inside a macro, call block or ``{% set %}`` block, whose output may be used anywhere."""
    parent = parents.get(id(node))
    while parent is not None:
        if isinstance(parent, (nodes.Macro, nodes.CallBlock, nodes.AssignBlock)):
            return True
        parent = parents.get(id(parent))
    return False


def _walk(node: nodes.Node) -> Iterator[nodes.Node]:
    yield node
    for child in node.iter_child_nodes():
        yield from _walk(child)


__all__ = [
    "FORBIDDEN",
    "PERSONAL",
    "WRAP_END",
    "WRAP_START",
    "Filled",
    "Layout",
    "Marker",
    "Piece",
    "fill",
    "fill_layout",
    "fits",
    "layout",
    "marked",
    "pieces",
    "presence",
    "substitutable",
    "wrap_filter",
]
