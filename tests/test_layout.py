"""The package's shape: no import cycle, the library never imports the application, evaluation never imports
training, and modules and functions small enough to read."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "swapout"

# The application: what defines runs and evaluates them, training, the command line. The rest (the op,
# layers, schedules, models, conversion, data, evaluation) is the library a user imports into a network.
APPLICATION = {"runs", "training", "tuning", "cli"}
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 250, 60


def _modules():
    """{dotted name below swapout: parsed source} for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = (path, ast.parse(path.read_text()), parts[-1] == "__init__")
    return out


def _imports(name, tree, is_package):
    """The package modules that ``name`` imports, at its top or inside functions (lazy imports count).

    ``from X import y`` counts X and, where y is a module of the package, X.y too; ``from swapout import
    y`` and ``import swapout.y`` count like their relative forms.
    """
    here = (name.split(".") if is_package else name.split(".")[:-1]) if name else []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(here[:len(here) - node.level + 1] + (node.module.split(".") if node.module else []))
            elif node.module == "swapout" or (node.module or "").startswith("swapout."):
                base = node.module[len("swapout."):] if node.module != "swapout" else ""
            else:
                continue
            if node.module:  # "from . import x" imports x; the package's own __init__ runs before any import
                found.add(base)
            found.update(f"{base}.{a.name}" if base else a.name for a in node.names)
        elif isinstance(node, ast.Import):
            found.update(a.name[len("swapout."):] for a in node.names if a.name.startswith("swapout."))
    return found


def _graph():
    modules = _modules()
    return {name: {m for m in _imports(name, tree, pkg) if m in modules and m != name}
            for name, (_, tree, pkg) in modules.items()}


def test_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for dep in sorted(graph[node]):
            if state.get(dep) == "open":
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    assert cycles == [], f"import cycles: {cycles}"


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for dep in graph[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_runs_reach_nothing_of_training():
    # swapout eval and report live in runs/: no chain of imports, lazy ones included, leads to training/
    graph = _graph()
    runs = [name for name in graph if name.split(".")[0] == "runs"]
    assert "runs.evaluate" in runs and "runs.report" in runs
    reached = {name: sorted(m for m in _reachable(graph, name) if m.split(".")[0] == "training") for name in runs}
    assert {k: v for k, v in reached.items() if v} == {}


def test_the_library_imports_no_application_module():
    graph = _graph()
    assert APPLICATION <= set(graph), sorted(APPLICATION - set(graph))  # the list names real packages
    wrong = {name: sorted(d for d in deps if d.split(".")[0] in APPLICATION) for name, deps in graph.items()
             if name.split(".")[0] not in APPLICATION}
    assert {k: v for k, v in wrong.items() if v} == {}


def test_the_top_holds_the_paper_and_the_machinery_has_rooms_of_its_own():
    # the op, the layers, the schedules and the methods at the top; the kernels behind the op and the converter
    # each in a subpackage, which the op and the public API reach only through their packages
    graph = _graph()
    top = sorted(name for name in graph if name and "." not in name and not (PACKAGE / name).is_dir())
    assert top == ["cache", "checks", "layers", "methods", "ops", "progress", "schedules"], top
    assert {"kernels", "kernels.fused", "kernels.cpu", "kernels.triton_cuda", "conversion", "conversion.convert",
            "conversion.graph", "conversion.arguments"} <= set(graph)
    assert (PACKAGE / "kernels" / "csrc" / "swapout_cpu.c").is_file()
    outside = {name: sorted(d for d in deps if d.startswith("kernels.")) for name, deps in graph.items()
               if not name.startswith("kernels")}
    assert {k: v for k, v in outside.items() if v} == {"ops": ["kernels.fused"], "training.step": ["kernels.fused"]}


def _docstring_lines(tree):
    """The line numbers that docstrings take: documentation, which the limits below do not count, so that
    documenting an argument never forces a module to split."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                lines.update(range(first.lineno, first.end_lineno + 1))
    return lines


def test_modules_and_functions_are_small():
    long_modules, long_functions = [], []
    for name, (path, tree, _) in _modules().items():
        docs = _docstring_lines(tree)
        lines = len(path.read_text().splitlines()) - len(docs)
        if lines > MAX_MODULE_LINES:
            long_modules.append(f"{name} ({lines} lines)")
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1 - len(docs & set(range(node.lineno, node.end_lineno + 1)))
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name} ({length} lines)")
    assert (long_modules, long_functions) == ([], [])


@pytest.mark.parametrize("command", [["eval"], ["report"]])
def test_evaluating_and_reporting_import_nothing_of_training(tmp_path, command):
    # The command is run to its first refusal (an empty folder), and the modules of both commands are
    # imported; none of the modules then loaded may be a training module (lazy imports inside their
    # functions: test_runs_reach_nothing_of_training).
    script = f"""
import json, sys
from swapout.cli.main import main
code = main({command + [str(tmp_path)]!r})
import swapout.runs.evaluate, swapout.runs.eval_extras, swapout.runs.report
print(json.dumps([code, sorted(m for m in sys.modules if m.startswith("swapout."))]))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    code, loaded = json.loads(out.stdout.strip().splitlines()[-1])
    assert code == 2
    assert [m for m in loaded if m.startswith("swapout.training")] == []
