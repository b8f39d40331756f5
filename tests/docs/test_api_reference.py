"""The API reference: every public name has an entry in ``docs/api/``, and its docstring documents its
arguments, what it returns and what it raises, in Google style (what the site renders).

Public means: the names in ``__all__`` of ``swapout`` and of its subpackages that define one, and the names
that ``docs/api/`` renders besides (the public modules of training and runs). ``mkdocs build --strict``
then fails on an entry whose target does not exist, and ``docs/check_site.py`` checks the built pages.
"""

import ast
import importlib
import inspect
import logging
import re
import textwrap
from pathlib import Path

import griffe
import pytest

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"
PACKAGES = ("swapout", "swapout.models", "swapout.data", "swapout.cli", "swapout.evaluation", "swapout.runs",
            "swapout.training", "swapout.tuning")
ENTRY = re.compile(r"^:::\s+([\w.]+)\s*$", re.M)


def public_names():
    """Every dotted name that must have an entry: the ``__all__`` of each package that defines one."""
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names += [f"{package}.{name}" for name in getattr(module, "__all__", ())]
    return names


def entries():
    """{dotted name: page} of every ``::: name`` in the API pages."""
    found = {}
    for page in sorted(API.glob("*.md")):
        for name in ENTRY.findall(page.read_text()):
            found.setdefault(name, page.name)
    return found


@pytest.fixture(scope="module")
def package():
    return griffe.load("swapout", search_paths=[str(ROOT / "src")], docstring_parser="google")


def _target(name, package):
    """The object a dotted name finally stands for (an import resolved to its definition)."""
    obj = package[name[len("swapout."):]] if name != "swapout" else package
    obj = obj.final_target if obj.is_alias else obj
    parent, _, last = name.rpartition(".")
    if obj.is_module and parent and not inspect.ismodule(getattr(importlib.import_module(parent), last)):
        obj = obj[last]  # a function named like its module (swapout.convert): the package exports the function
    return obj


def test_every_public_name_has_an_entry(package):
    rendered = {_target(name, package).path for name in entries()}
    missing = [name for name in public_names() if _target(name, package).path not in rendered]
    assert not missing, f"public names without an entry in docs/api/: {missing}"


def test_the_docstrings_parse_without_warnings(package, caplog):
    """What griffe warns about here, ``mkdocs build --strict`` fails on."""
    with caplog.at_level(logging.WARNING, logger="griffe"):
        for name in entries():
            obj = _target(name, package)
            for member in [obj] + [m for k, m in obj.members.items() if obj.is_class and not m.is_alias
                                   and (not k.startswith("_") or k == "__init__")]:
                if member.docstring:
                    member.docstring.parse("google")
    assert not caplog.records, "\n".join(r.getMessage() for r in caplog.records)


def _sections(obj):
    return {section.kind.value: section for section in obj.docstring.parse("google")} if obj.docstring else {}


def _raises(obj) -> bool:
    """Whether the function's own body raises (not counting nested functions)."""
    tree = ast.parse(textwrap.dedent(obj.source))
    if not tree.body:  # no source of its own: a dataclass's generated __init__
        return False
    stack = list(tree.body[0].body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Raise):
            return True
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return False


def _missing_arguments(parameters, sections, label, where):
    documented = {p.name.lstrip("*") for p in sections["parameters"].value} if "parameters" in sections else set()
    return [f"{label}: argument {p.name!r} not in {where}" for p in parameters
            if p.name not in ("self", "cls") and p.name.lstrip("*") not in documented]


def _function_gaps(obj, label):
    if not obj.docstring:
        return [f"{label}: no docstring"]
    sections = _sections(obj)
    gaps = _missing_arguments(obj.parameters, sections, label, "Args")
    returns = str(obj.returns) if obj.returns is not None else None
    if returns not in (None, "None") and not {"returns", "yields"} & set(sections):
        gaps.append(f"{label}: returns {returns} but has no Returns section")
    if _raises(obj) and "raises" not in sections:
        gaps.append(f"{label}: raises but has no Raises section")
    return gaps


def _gaps(name, package):
    obj = _target(name, package)
    if obj.is_function:
        return _function_gaps(obj, name)
    if not obj.docstring:
        return [f"{name}: no docstring"]
    gaps = []
    if obj.is_class:
        # the class's docstring documents its constructor (the site merges the two)
        init, sections = obj.members.get("__init__"), _sections(obj)
        if init is not None and not init.is_alias:
            gaps += _missing_arguments(init.parameters, sections, name, "the class's Args")
            post_init = obj.members.get("__post_init__")
            raises = _raises(init) or (post_init is not None and not post_init.is_alias and _raises(post_init))
            if raises and "raises" not in sections:
                gaps.append(f"{name}: its constructor raises but the class has no Raises section")
        for member_name, member in obj.members.items():
            if not member_name.startswith("_") and not member.is_alias and member.is_function:
                gaps += _function_gaps(member, f"{name}.{member_name}")
    return gaps


def test_every_entry_documents_its_arguments_returns_and_errors(package):
    gaps = [gap for name in sorted(entries()) for gap in _gaps(name, package)]
    assert not gaps, "docstrings with gaps:\n" + "\n".join(gaps)


def _signature_functions(obj):
    if obj.is_function:
        yield obj
    elif obj.is_class:
        for key, member in obj.members.items():
            if not member.is_alias and member.is_function and (not key.startswith("_") or key == "__init__"):
                yield member


def test_every_type_in_a_public_signature_has_an_entry(package):
    """A type of swapout's own that a public signature names (``ScheduleLike``, ``Patterns``, ``Join``, ...) has
    an entry of its own, so that the signature links to it. Private helpers (``_Log``) are described by the
    argument's docstring instead."""
    rendered = {_target(name, package).path for name in entries()}
    missing = set()
    for name in entries():
        for function in _signature_functions(_target(name, package)):
            annotations = [p.annotation for p in function.parameters] + [function.returns]
            for annotation in annotations:
                if annotation is None or isinstance(annotation, str):
                    continue
                for part in annotation.iterate(flat=True):
                    if not isinstance(part, griffe.ExprName) or not part.canonical_path.startswith("swapout."):
                        continue
                    target = package[part.canonical_path[len("swapout."):]]
                    path = (target.final_target if target.is_alias else target).path
                    if path not in rendered and not path.rpartition(".")[2].startswith("_"):
                        missing.add(f"{path} (in {name})")
    assert not missing, f"types in public signatures without an entry in docs/api/: {sorted(missing)}"
