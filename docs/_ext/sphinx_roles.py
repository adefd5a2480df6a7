"""A griffe extension for the docs build: Sphinx-style cross references as links.

atune's docstrings are Google style with Sphinx roles for cross references
(``:class:`~atune.result.ResultGrid```, ``:meth:`Tuner.start```), which read well in
``help()`` and in editors. mkdocstrings renders Markdown, so this extension (loaded by
``mkdocs.yml``) rewrites each role into an *optional* autorefs link before the docstrings
are parsed: the name is resolved in the scope of the object the docstring belongs to, and
becomes a link when the reference documents that object, or plain code otherwise (so a
reference to a private helper never breaks the ``--strict`` build). Two more bits of
reStructuredText become Markdown: a paragraph ending in ``::`` ("a literal block
follows") ends in ``:``, and a simple table (columns drawn with ``====  ====`` borders,
an optional header between the first two) becomes a Markdown table.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

from griffe import Alias, Extension, Module, Object

_ROLE = re.compile(
    r":(?:py:)?(?P<role>class|func|meth|mod|data|attr|exc|obj|const):`(?P<text>[^`]+)`"
)
_EXPLICIT_TITLE = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$")
_LITERAL_BLOCK = re.compile(r"(?<=\S)::(?=\n\s*\n)")
_BORDER = re.compile(r"^ *=+(?: +=+)+ *$")


def _walk(obj: Object) -> Iterator[Object]:
    yield obj
    for member in obj.members.values():
        if not isinstance(member, Alias):
            yield from _walk(member)


def _identifier(obj: Object, target: str) -> str:
    """The full path of ``target`` as seen from ``obj`` (``target`` itself if unknown)."""
    if target.startswith("atune.") or target == "atune":
        return target
    head, _, rest = target.partition(".")
    try:
        resolved = obj.resolve(head)
    except Exception:  # NameResolutionError, or an alias that cannot be followed
        return target
    return f"{resolved}.{rest}" if rest else resolved


def _link(obj: Object, match: re.Match[str]) -> str:
    text = match["text"].strip()
    explicit = _EXPLICIT_TITLE.match(text)
    if explicit:
        title, target = explicit["title"], explicit["target"]
    else:
        target = text
        title = None
    short = target.startswith("~")
    target = target.lstrip("~.")
    if title is None:
        title = target.rsplit(".", 1)[-1] if short else target
        if match["role"] in ("func", "meth"):
            title += "()"
    identifier = html.escape(_identifier(obj, target), quote=True)
    return (
        f'<autoref identifier="{identifier}" optional>'
        f"<code>{html.escape(title, quote=False)}</code></autoref>"
    )


def _cells(line: str, starts: list[int]) -> list[str]:
    ends = [*starts[1:], len(line)]
    return [line[a:b].strip() for a, b in zip(starts, ends, strict=True)]


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    return [line(header), "|" + "---|" * len(header), *(line(row) for row in rows)]


def _simple_tables(text: str) -> str:
    """Each reStructuredText simple table of ``text`` as a Markdown table."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        if not _BORDER.match(lines[i]):
            out.append(lines[i])
            i += 1
            continue
        starts = [m.start() for m in re.finditer(r"=+", lines[i])]
        borders, rows, j = [i], [], i + 1
        while j < len(lines):
            if _BORDER.match(lines[j]):
                borders.append(j)
                if j + 1 >= len(lines) or not lines[j + 1].strip():
                    break  # the closing border
            elif lines[j].strip():
                cells = _cells(lines[j], starts)
                if cells[0] or not rows:
                    rows.append((j, cells))
                else:  # a continuation line: the first column is blank
                    previous = rows[-1][1]
                    for k, cell in enumerate(cells):
                        if cell:
                            previous[k] = f"{previous[k]} {cell}".strip()
            j += 1
        if len(borders) >= 3:  # a header row between the first two borders
            header = next(c for line, c in rows if line < borders[1])
            body = [c for line, c in rows if line > borders[1]]
        else:
            header, body = [""] * len(starts), [c for _, c in rows]
        indent = " " * (len(lines[i]) - len(lines[i].lstrip()))
        out.extend(indent + row for row in _markdown_table(header, body))
        i = j + 1
    return "\n".join(out)


class SphinxRoles(Extension):
    """Rewrite the Sphinx roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is None:
                continue
            value = docstring.value
            if "==" in value:  # tables first: their columns are found by position
                value = _simple_tables(value)
            value = _ROLE.sub(lambda m, o=obj: _link(o, m), value)
            docstring.value = _LITERAL_BLOCK.sub(":", value)
