"""Checks the built site (``mkdocs build --strict`` first): every public name of the API reference has its
entry on a page, and every entry's table of parameters names each argument of its signature; no page shows
Markdown that failed to render (a list item or a code fence left as literal text in a paragraph, which
``--strict`` does not see); every formula was turned into MathML at build time, and no page loads a script
from elsewhere, so that the site reads the same without internet access; and each command's page lists every
argument of its parser.

    python docs/check_site.py site

Exits 1, listing what is missing. CI runs it after the build.
"""

import html
import importlib
import inspect
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "docs"))

from test_api_reference import entries  # noqa: E402  (the pages' entries, read as the tests read them)


def _object(name: str):
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _parameters(obj) -> list:
    if not callable(obj) or inspect.ismodule(obj):
        return []
    target = obj.__init__ if inspect.isclass(obj) else obj
    if not getattr(target, "__module__", "").startswith("swapout"):
        return []  # a class without a constructor of its own (object's, Exception's)
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    stars = {inspect.Parameter.VAR_POSITIONAL: "*", inspect.Parameter.VAR_KEYWORD: "**"}
    return [stars.get(p.kind, "") + p.name for p in signature.parameters.values() if p.name not in ("self", "cls")]


# A paragraph that holds a line starting with "- ", "* " or "1. ", or a code fence, is Markdown that did not render:
# typically a block indented 2 spaces inside a list item, after which Python-Markdown ends the list and the rest
# of the items become one paragraph with literal dashes.
_PARAGRAPH = re.compile(r"<p\b[^>]*>(.*?)</p>", re.S)
_LITERAL = re.compile(r"(?:^|\n)\s*(?:[-*+]|\d+\.)\s+\S|```")


def pages(site: Path) -> list:
    """The built pages (not the search index, not the 404 page)."""
    return sorted(path for path in site.rglob("*.html") if path.name != "404.html")


def unrendered_markdown(site: Path) -> list:
    found = []
    for path in pages(site):
        for paragraph in _PARAGRAPH.findall(path.read_text()):
            text = html.unescape(re.sub(r"<[^>]+>", "", paragraph))
            match = _LITERAL.search(text)
            if match:
                line = text[match.start():].strip().splitlines()[0][:70]
                found.append(f"{path.relative_to(site)}: Markdown left as text in a paragraph: {line!r}")
    return found


def math_and_scripts(site: Path) -> list:
    """Formulas are MathML in the page (``docs/hooks.py`` converts them), not TeX for a script to typeset, and
    every script the pages load is served by the site itself."""
    found = []
    for path in pages(site):
        text = path.read_text()
        where = path.relative_to(site)
        for formula in re.findall(r'<(?:span|div) class="arithmatex">(.*?)</(?:span|div)>', text, re.S):
            if "<math" not in formula:
                found.append(f"{where}: a formula not converted to MathML: {formula[:60]!r}")
        for source in re.findall(r'<script[^>]+src="([^"]+)"', text):
            if re.match(r"(?:https?:)?//", source):
                found.append(f"{where}: loads a script from elsewhere: {source}")
    return found


def images(site: Path) -> list:
    """Every image a page shows is a file of the site (the figures come from ``results/`` at build time)."""
    found = []
    for path in pages(site):
        for source in re.findall(r'<img[^>]+src="([^"]+)"', path.read_text()):
            local = not re.match(r"(?:https?:|data:|//)", source)
            if local and not (path.parent / html.unescape(source)).resolve().is_file():
                found.append(f"{path.relative_to(site)}: image {source} is not in the site")
    return found


def cli_reference(site: Path) -> list:
    """Each command's page lists every argument its parser has (the pages are generated from the parsers; this
    catches a generator that skips some)."""
    import argparse

    from swapout.cli.main import build_parser

    found = []
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        built = site / "cli" / name / "index.html"
        text = html.unescape(built.read_text()) if built.exists() else ""
        if not text:
            found.append(f"swapout {name}: no page cli/{name}/index.html")
            continue
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for label in action.option_strings or [action.metavar or action.dest]:
                if f"<code>{label}</code>" not in text:
                    found.append(f"swapout {name}: {label} not on cli/{name}/index.html")
    return found


def problems(site: Path) -> list:
    found = unrendered_markdown(site) + math_and_scripts(site) + images(site) + cli_reference(site)
    for name, page in entries().items():
        built = site / "api" / Path(page).stem / "index.html"
        text = built.read_text() if built.exists() else ""
        start = text.find(f'id="{name}"')
        if start < 0:
            found.append(f"{name}: no entry in {built.relative_to(site)}")
            continue
        nxt = re.search(r'<h2 id="', text[start + 1:])
        block = html.unescape(text[start:start + 1 + nxt.start()] if nxt else text[start:])
        for parameter in _parameters(_object(name)):
            if f"<code>{parameter.lstrip('*')}</code>" not in block and f"<code>{parameter}</code>" not in block:
                found.append(f"{name}: argument {parameter!r} not in its table of parameters")
    return found


if __name__ == "__main__":
    issues = problems(Path(sys.argv[1] if len(sys.argv) > 1 else "site"))
    print("\n".join(issues) if issues
          else f"the API reference renders all {len(entries())} entries with their arguments; no page shows "
               "unrendered Markdown, a formula left as TeX, or a script from elsewhere; the command line's pages list "
               "every option")
    sys.exit(1 if issues else 0)
