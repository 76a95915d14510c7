"""MkDocs hook: render the Sphinx roles used in cephspine's docstrings as cross-references.

The docstrings write references the Sphinx way (:func:`name`, :class:`~pkg.Name`,
:meth:`title <target>`), which mkdocstrings leaves as text. This hook turns each into an
optional autorefs reference: a link when the target is documented on this site, plain code
otherwise (never a warning). A relative name is looked up among the objects documented on
the same page, then on the whole site, then at the top level of the package. It runs in
``on_env``, after every page is rendered and before autorefs resolves references.
"""

from __future__ import annotations

import html
import re
from typing import Any

ROLE_RE = re.compile(r":(?:func|class|meth|data|attr|mod|exc|obj|const):<code>(?P<body>[^<]*)</code>")
ID_RE = re.compile(r'id="(?P<id>cephspine(?:\.[A-Za-z_][A-Za-z0-9_]*)+)"')
LONE_COLONS_RE = re.compile(r"<p>::</p>\s*")
TRAILING_COLONS_RE = re.compile(r"::</p>")

PACKAGE = "cephspine"


def _suffix_match(name: str, ids: list[str]) -> str | None:
    matches = [i for i in ids if i.endswith("." + name)]
    return min(matches, key=len) if matches else None


def _resolve(name: str, page_ids: list[str], site_ids: list[str]) -> tuple[str, str | None]:
    """The identifier to try for ``name`` and a fallback one (autorefs' ``slug``)."""
    if name.startswith(PACKAGE + "."):
        parts = name.split(".")
        # cephspine.<module>.<Object>...: also try the top-level alias cephspine.<Object>...
        fallback = ".".join([PACKAGE, *parts[2:]]) if len(parts) > 2 else None
        return name, fallback
    found = _suffix_match(name, page_ids) or _suffix_match(name, site_ids)
    if found:
        return found, f"{PACKAGE}.{name}"
    if "." in name:  # another package's object (os.replace, json.dumps)
        return name, None
    return f"{PACKAGE}.{name}", None


def _fix(content: str, site_ids: list[str]) -> str:
    page_ids = sorted(set(ID_RE.findall(content)))

    def replace(match: re.Match[str]) -> str:
        body = html.unescape(match["body"]).strip()
        explicit = re.fullmatch(r"(?P<title>.+?)\s*<(?P<target>[^>]+)>", body)
        if explicit:
            title, target = explicit["title"], explicit["target"]
        else:
            target = body.lstrip("~")
            title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
            if body.endswith("()") and not title.endswith("()"):
                title += "()"
        identifier, fallback = _resolve(target.removesuffix("()"), page_ids, site_ids)
        slug = f' slug="{html.escape(fallback)}"' if fallback and fallback != identifier else ""
        return (
            f'<autoref identifier="{html.escape(identifier)}"{slug} optional>'
            f"<code>{html.escape(title)}</code></autoref>"
        )

    content = ROLE_RE.sub(replace, content)
    content = LONE_COLONS_RE.sub("", content)
    return TRAILING_COLONS_RE.sub(":</p>", content)


def on_env(env: Any, config: Any, files: Any, **kwargs: Any) -> Any:
    pages = [f.page for f in files if f.page is not None and f.page.content]
    site_ids = sorted({i for p in pages for i in ID_RE.findall(p.content)})
    for page in pages:
        page.content = _fix(page.content, site_ids)
    return env
