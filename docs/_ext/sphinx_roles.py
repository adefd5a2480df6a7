"""A griffe extension for the docs build: Sphinx-style cross references as links.

atune's docstrings are Google style with Sphinx roles for cross references
(``:class:`~atune.result.ResultGrid```, ``:meth:`Tuner.start```), which read well in
``help()`` and in editors. mkdocstrings renders Markdown, so this extension (loaded by
``mkdocs.yml``) rewrites each role into an *optional* autorefs link before the docstrings
are parsed: the name is resolved in the scope of the object the docstring belongs to, and
becomes a link when the reference documents that object, or plain code otherwise (so a
reference to a private helper never breaks the ``--strict`` build). A paragraph ending
in ``::`` (reStructuredText's "a literal block follows") ends in ``:``.
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


class SphinxRoles(Extension):
    """Rewrite the Sphinx roles of every docstring of the package once it is loaded."""

    def on_package(self, *, pkg: Module, **kwargs: Any) -> None:
        for obj in _walk(pkg):
            docstring = obj.docstring
            if docstring is None:
                continue
            value = _ROLE.sub(lambda m, o=obj: _link(o, m), docstring.value)
            docstring.value = _LITERAL_BLOCK.sub(":", value)
