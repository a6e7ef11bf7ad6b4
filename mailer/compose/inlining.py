"""CSS inlined into the HTML templates once, when they are loaded: no per-message cost.

Mail clients drop or mangle ``<style>`` (Gmail's web client on forwarded mail, Outlook's Word engine, many
phone apps), so every rule must end up in ``style=""`` attributes. Inlining a rendered message costs
about a millisecond; the service renders thousands. :class:`InliningLoader` instead inlines the *template
source*: Jinja's tags are swapped for placeholders the HTML parser keeps in place, css-inline applies
``_styles.css`` (and, for right-to-left languages, ``_styles.rtl.css``) and the tags are put back. Jinja
then compiles the inlined source and caches it, so inlining runs once per template file and direction.

What this asks of HTML templates (:class:`InliningError`, a RenderError, names the file and line):

- Jinja may stand between elements, in text, or inside a quoted attribute value; never between attributes
  (``<p {% if x %}class="a"{% endif %}>``) and never in ``style`` or ``class`` (styles come from classes
  the stylesheet defines, so they are known when the template is loaded). An expression between table
  rows (outside a cell) is refused too: parsers move such text before the table.
- An HTML partial must be valid where the body starts (no bare ``<tr>`` at its top).

Direction: a template is right-to-left when its file is named for a right-to-left language (``ar.html``,
``fa.html``: Babel's character order) or when it is loaded as ``@rtl/<name>``; in a right-to-left template,
references to other HTML templates (``{% extends "_layout.html" %}``) are rewritten to their ``@rtl/``
version, so the shared layout is inlined once per direction (the name still ends in ``.html``, so it is
autoescaped like the file). At-rules (``@media``) of the stylesheets are
kept in a ``<style>`` element of full documents (the layout) for the clients that honour them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from pathlib import Path

import css_inline
import jinja2
from babel import UnknownLocaleError

from mailer.compose.localise import is_rtl, locale_for
from mailer.errors import RenderError

STYLESHEET = "_styles.css"
RTL_STYLESHEET = "_styles.rtl.css"
RTL_PREFIX = "@rtl/"

_TEXT_MARK = "\ue000{}\ue001"  # private-use characters: kept as they are by the HTML parser and serialiser
_COMMENT_MARK = (
    "<!--\ue002{}\ue003-->"  # between table rows text would be moved ("foster-parented"); comments are not
)
_MARK = re.compile("<!--\ue002(\\d+)\ue003-->|\ue000(\\d+)\ue001")
_OPENERS = ("{{", "{%", "{#")
_RAW_BEGIN = re.compile(r"\{%[-+]?\s*raw\s*[-+]?%\}")
_RAW_END = re.compile(r"\{%[-+]?\s*endraw\s*[-+]?%\}")
_REFERENCE = re.compile(r"""(\{%[-+]?\s*(?:extends|include|import|from)\s+)(["'])([^"']+\.html)\2""")
_LANGUAGE_FILE = re.compile(r"(?:^|/)(?P<lang>[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*)\.html$")
_RAW_TEXT_ELEMENTS = ("title", "textarea", "style", "script")
_TABLE_ELEMENTS = frozenset({"table", "thead", "tbody", "tfoot", "tr", "td", "th", "caption"})
_DOCUMENT = re.compile(r"<!doctype|<html[\s>]", re.IGNORECASE)


class InliningError(RenderError):
    """An HTML template whose Jinja tags cannot be kept through CSS inlining (see the module docstring)."""


def jinja_spans(source: str) -> list[tuple[int, int]]:
    """(start, end) of every Jinja construct in ``source``: ``{{ }}``, ``{% %}``, ``{# #}`` and whole
    ``{% raw %}...{% endraw %}`` blocks. Quoted strings inside tags are skipped, so ``{{ "}}" }}`` is one."""
    spans: list[tuple[int, int]] = []
    index = 0
    while True:
        starts = [i for i in (source.find(opener, index) for opener in _OPENERS) if i >= 0]
        if not starts:
            return spans
        start = min(starts)
        opener = source[start : start + 2]
        raw = _RAW_BEGIN.match(source, start)
        if raw:
            end_match = _RAW_END.search(source, raw.end())
            end = end_match.end() if end_match else len(source)
        elif opener == "{#":
            close = source.find("#}", start + 2)
            end = close + 2 if close >= 0 else len(source)
        else:
            end = _tag_end(source, start + 2, "}}" if opener == "{{" else "%}")
        spans.append((start, end))
        index = end


def _tag_end(source: str, index: int, closer: str) -> int:
    quote = ""
    while index < len(source):
        char = source[index]
        if quote:
            if char == "\\":
                index += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif source.startswith(closer, index):
            return index + 2
        index += 1
    return len(source)


class _Scanner:
    """Tracks where in the HTML a position is: text, inside a tag, inside a quoted attribute value, a comment
    or the text of a raw-text element (title, style, script, textarea)."""

    _TAG_OPEN = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9-]*)")

    def __init__(self) -> None:
        self.open_tables: list[str] = []  # open table elements, innermost last
        self.state = "text"  # text | tag | value | comment | raw
        self.tag = ""
        self.closing = False
        self.attribute = ""
        self.quote = ""
        self.raw_element = ""
        self._name = ""  # attribute name being read inside a tag

    def feed(self, html: str) -> None:
        index = 0
        while index < len(html):
            char = html[index]
            if self.state == "text":
                if html.startswith("<!--", index):
                    self.state, index = "comment", index + 4
                    continue
                match = self._TAG_OPEN.match(html, index)
                if match:
                    self.state, self.closing, self.tag = "tag", bool(match[1]), match[2].lower()
                    self._name = ""
                    index = match.end()
                    continue
            elif self.state == "comment":
                if html.startswith("-->", index):
                    self.state, index = "text", index + 3
                    continue
            elif self.state == "raw":
                if html[index:].lower().startswith(f"</{self.raw_element}"):
                    self.state = "text"
                    continue
            elif self.state == "tag":
                if char == ">":
                    self._track_table()
                    opens_raw = not self.closing and self.tag in _RAW_TEXT_ELEMENTS
                    self.state, self.raw_element = ("raw", self.tag) if opens_raw else ("text", "")
                elif char in "\"'":
                    self.state, self.quote, self.attribute = "value", char, self._name.lower()
                elif char == "=" or char.isspace() or char == "/":
                    if char != "=":
                        self._name = ""
                else:
                    if index and html[index - 1] in " \t\n/\"'":
                        self._name = ""
                    self._name += char
            elif self.state == "value" and char == self.quote:
                self.state, self._name = "tag", ""
            index += 1

    def _track_table(self) -> None:
        if self.tag not in _TABLE_ELEMENTS:
            return
        if not self.closing:
            self.open_tables.append(self.tag)
        elif self.tag in self.open_tables:
            while self.open_tables.pop() != self.tag:
                pass

    @property
    def between_rows(self) -> bool:
        """In a table but outside any cell: text here is moved before the table by HTML parsers."""
        return bool(self.open_tables) and self.open_tables[-1] in ("table", "thead", "tbody", "tfoot", "tr")


def protect(source: str, name: str) -> tuple[str, list[tuple[str, int]]]:
    """``source`` with each Jinja construct replaced by a placeholder, and the constructs in order with the
    line each starts on.

    Raises :class:`InliningError` for Jinja between attributes or inside ``style``/``class``.
    """
    scanner = _Scanner()
    pieces: list[str] = []
    constructs: list[tuple[str, int]] = []
    last = 0
    for start, end in jinja_spans(source):
        html = source[last:start]
        scanner.feed(html)
        pieces.append(html)
        construct = source[start:end]
        line = source.count("\n", 0, start) + 1
        if scanner.state == "tag":
            raise InliningError(
                f"{name} line {line}: Jinja between the attributes of <{scanner.tag}> cannot be "
                "kept through CSS inlining; put it inside an attribute value"
            )
        if scanner.state == "value" and scanner.attribute in ("style", "class"):
            raise InliningError(
                f"{name} line {line}: Jinja in a {scanner.attribute} attribute of <{scanner.tag}>: "
                "use classes defined in the stylesheet instead"
            )
        statement = construct.startswith(("{%", "{#"))
        if scanner.state == "text" and not statement and scanner.between_rows:
            raise InliningError(
                f"{name} line {line}: {construct} stands between table rows, where HTML parsers "
                "move text before the table: put it inside a cell"
            )
        mark = _COMMENT_MARK if statement and scanner.state == "text" else _TEXT_MARK
        pieces.append(mark.format(len(constructs)))
        constructs.append((construct, line))
        last = end
    pieces.append(source[last:])
    return "".join(pieces), constructs


def restore(html: str, constructs: list[tuple[str, int]], name: str) -> str:
    """Put the Jinja constructs back, each on the line it had in the file (the parser drops some line breaks,
    e.g. inside tags and around the head: the missing ones are put back after the nearest preceding ``>``, so
    errors name the file's lines). Raises :class:`InliningError` when the parser lost or doubled a construct.
    """
    out: list[str] = []
    lines = 0
    seen: list[int] = []
    last = 0
    for match in _MARK.finditer(html):
        number = int(match[1] or match[2])
        seen.append(number)
        construct, line = constructs[number]
        chunk = html[last : match.start()]
        missing = line - 1 - (lines + chunk.count("\n"))
        if missing > 0:
            cut = chunk.rfind(">") + 1
            chunk = chunk[:cut] + "\n" * missing + chunk[cut:]
        out += [chunk, construct]
        lines += chunk.count("\n") + construct.count("\n")
        last = match.end()
    out.append(html[last:])
    if sorted(seen) != list(range(len(constructs))):
        lost = sorted(set(range(len(constructs))) - set(seen))
        detail = ", ".join(repr(constructs[n][0]) for n in lost[:3]) or "a tag came out twice"
        raise InliningError(
            f"{name}: the HTML parser dropped Jinja tags ({detail}): is the HTML around them valid?"
        )
    moved = next((n for previous, n in itertools.pairwise(seen) if n < previous), None)
    if moved is not None:  # e.g. text between table rows, which HTML parsers move before the table
        construct, line = constructs[moved]
        raise InliningError(
            f"{name} line {line}: the HTML parser moved {construct!r}: put it inside a cell or "
            "an element that may hold text"
        )
    return "".join(out)


def inline_template(source: str, css: str, name: str) -> str:
    """The template ``source`` with ``css`` inlined into style attributes (a full document keeps at-rules)."""
    protected, constructs = protect(source, name)
    try:
        if _DOCUMENT.search(protected):
            inliner = css_inline.CSSInliner(
                keep_at_rules=True, extra_css=css or None, load_remote_stylesheets=False
            )
            inlined = inliner.inline(protected)
        else:
            inlined = css_inline.inline_fragment(protected, css, load_remote_stylesheets=False)
    except (css_inline.InlineError, ValueError) as exc:
        raise InliningError(f"{name}: CSS inlining failed: {exc}") from None
    restored = restore(inlined, constructs, name)
    if source.endswith("\n") and not restored.endswith("\n"):
        restored += "\n"  # the parser drops the file's last line break; keep_trailing_newline keeps it
    return restored


def template_is_rtl(name: str) -> bool:
    """True for ``@rtl/...`` names and files named for a right-to-left language (``notice/ar.html``)."""
    if name.startswith(RTL_PREFIX):
        return True
    match = _LANGUAGE_FILE.search(name)
    if not match:
        return False
    try:
        return is_rtl(locale_for(match["lang"].replace("_", "-")))
    except (ValueError, UnknownLocaleError):
        return False


class InliningLoader(jinja2.FileSystemLoader):
    """A file loader that inlines the stylesheets into ``.html`` templates (see the module docstring).

    Without ``_styles.css`` in the folder, HTML templates are loaded as they are. Stylesheets are read once;
    a template is inlined once per version of its file (the syntax check of mailer.compose.personalise reads it again).
    """

    def __init__(self, searchpath: str | Path) -> None:
        super().__init__(searchpath)
        root = Path(searchpath)
        self.css = _read(root / STYLESHEET)
        self.rtl_css = _read(root / RTL_STYLESHEET)
        self._inlined: dict[tuple[str, str], str] = {}  # (template name, file text) -> inlined source

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        rtl = template_is_rtl(template)
        filename = template.removeprefix(RTL_PREFIX)
        source, path, uptodate = super().get_source(environment, filename)
        if not filename.endswith(".html") or self.css is None:
            return source, path, uptodate
        inlined = self._inlined.get((template, source))
        if inlined is None:
            environment.parse(source, template, path)  # syntax errors name the file's own lines
            css = self.css + ("\n" + self.rtl_css if rtl and self.rtl_css else "")
            text = source
            if rtl:
                text = _REFERENCE.sub(
                    lambda m: f"{m[1]}{m[2]}{RTL_PREFIX}{m[3].removeprefix(RTL_PREFIX)}{m[2]}", text
                )
            inlined = self._inlined[(template, source)] = inline_template(text, css, template)
        return inlined, path, uptodate


def _read(path: Path) -> str | None:
    """A stylesheet without its comments (css-inline would copy them into the kept ``<style>``)."""
    return (
        re.sub(r"/\*.*?\*/", "", path.read_text(encoding="utf-8"), flags=re.DOTALL)
        if path.is_file()
        else None
    )


__all__ = [
    "InliningError",
    "InliningLoader",
    "inline_template",
    "jinja_spans",
    "protect",
    "restore",
    "template_is_rtl",
]
