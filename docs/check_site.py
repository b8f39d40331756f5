"""Checks the built site (``mkdocs build --strict`` first): every public name of the API reference has its
entry on a page, and every entry's table of parameters names each argument of its signature.

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


def problems(site: Path) -> list:
    found = []
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
    print("\n".join(issues) if issues else f"the API reference renders all {len(entries())} entries with their arguments")
    sys.exit(1 if issues else 0)
