"""The documentation: it builds with warnings as errors, and covers the public names.

``mkdocs build --strict`` (what ``make docs`` runs) fails on any warning: a docstring
mkdocstrings cannot parse, a link to a page or an API object that does not exist, a
page left out of the navigation. The build test is marked ``docs`` (deselect with
``-m "not docs"``); the other tests here read files only.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import atune

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
_LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]


@pytest.mark.docs
@pytest.mark.slow
def test_the_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason='needs the "docs" extra')
    pytest.importorskip("mkdocstrings_handlers.python", reason='needs the "docs" extra')
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert (tmp_path / "reference" / "tuner" / "index.html").is_file()
    page = (tmp_path / "reference" / "run" / "index.html").read_text()
    assert 'id="atune.Run.events"' in page  # the run handle's methods are documented
    # Sphinx roles in docstrings became links (docs/_ext/sphinx_roles.py), not raw text.
    assert ":class:`" not in page and ":meth:`" not in page
    # ... and reStructuredText simple tables became tables (the hooks of Callback).
    callbacks = (tmp_path / "reference" / "callbacks" / "index.html").read_text()
    assert "<td><code>on_step_begin</code></td>" in callbacks


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_links_stay_inside_the_repository(path: Path) -> None:
    """Every relative link of the README and the docs names a file of this repository."""
    text = path.read_text()
    for match in _LINK.finditer(text):
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) and not target.startswith("file:"):
            continue  # a web address
        if target.startswith("#"):
            continue  # an anchor on the same page
        assert not target.startswith("/"), f"{path.name}: absolute link {target}"
        resolved = (path.parent / target.split("#", 1)[0]).resolve()
        assert resolved.is_relative_to(ROOT), f"{path.name}: {target} leaves the repository"
        assert resolved.exists(), f"{path.name}: {target} does not exist"
        if path.is_relative_to(DOCS):
            # The site is built from docs/ alone: a page links only to what is in it.
            assert resolved.is_relative_to(DOCS), f"{path.name}: {target} is outside docs/"


def test_the_reference_lists_every_public_name() -> None:
    """docs/reference/index.md links every name of ``atune.__all__`` (the strict build
    then checks that each link reaches the object's documentation)."""
    text = (DOCS / "reference" / "index.md").read_text()
    linked = set(re.findall(r"\]\[atune\.(\w+)\]", text))
    public = {name for name in atune.__all__ if not name.startswith("__")}
    assert public - linked == set()


def test_every_guide_is_in_the_navigation() -> None:
    """mkdocs.yml names every page (the strict build also fails on an omitted page)."""
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "_ext" not in p.parts}
    named = set(re.findall(r":\s+(\S+\.md)\s*$", config, flags=re.MULTILINE))
    assert pages == named
