"""The built site: ``mkdocs build --strict`` and ``docs/check_site.py`` pass on it; the command line's pages are
generated from the parsers and list every option; the equation is MathML, with no script to fetch; and the
checker does catch the defects it is there for (a list rendered as literal dashes, a formula left as TeX, an
option missing from a page)."""

import argparse
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs"))

import check_site  # noqa: E402


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("latex2mathml") is None:
        pytest.skip("the docs extra is not installed (pip install -e '.[docs]')")
    out = tmp_path_factory.mktemp("site")
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(out)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300,
                           env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert built.returncode == 0, built.stdout + built.stderr
    return out


def _subcommands():
    from swapout.cli.main import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_the_built_site_passes_its_checks(site):
    assert check_site.problems(site) == []


def test_every_command_has_a_page_with_every_option_and_its_help(site):
    for name, parser in _subcommands().items():
        text = (site / "cli" / name / "index.html").read_text()
        assert f"swapout {name}" in text and "usage: swapout" in text
        for action in parser._actions:
            if action.option_strings and not isinstance(action, argparse._HelpAction):
                assert f"<code>{action.option_strings[0]}</code>" in text, f"swapout {name} {action.option_strings}"
    assert "--by-seed" in (site / "cli" / "report" / "index.html").read_text()


def test_the_equation_is_mathml_on_the_front_page(site):
    text = (site / "index.html").read_text()
    assert '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">' in text
    assert "\\Theta" not in text and "Theta1 * X" not in text


def _page(tmp_path, body):
    (tmp_path / "page").mkdir(exist_ok=True)
    (tmp_path / "page" / "index.html").write_text(f"<html><body>{body}</body></html>")
    return tmp_path


def test_the_checker_catches_a_list_rendered_as_literal_dashes(tmp_path):
    # what the Optuna page showed: a JSON block indented 2 spaces in a list item ended the list, and the next
    # items became one paragraph with literal dashes
    broken = _page(tmp_path, "<ul><li><p>The space</p></li></ul><p><code>step</code> defaults to 0.01.\n"
                             "- <strong>The objective</strong> is the error</p>")
    assert [p for p in check_site.unrendered_markdown(broken) if "The objective" in p]
    fixed = _page(tmp_path, "<ul><li><p>The space</p></li><li><p>The objective - held out</p></li></ul>")
    assert check_site.unrendered_markdown(fixed) == []


def test_the_checker_catches_tex_and_scripts_from_elsewhere(tmp_path):
    broken = _page(tmp_path, '<div class="arithmatex">\\[Y = X\\]</div>'
                             '<script src="https://cdn.example.org/mathjax.js"></script>')
    assert len(check_site.math_and_scripts(broken)) == 2


def test_the_checker_catches_an_option_missing_from_a_command_page(site, tmp_path):
    copy = tmp_path / "cli" / "demo"
    copy.mkdir(parents=True)
    text = (site / "cli" / "demo" / "index.html").read_text()
    (copy / "index.html").write_text(text.replace("<code>--samples</code>", "<code>--passes</code>"))
    problems = check_site.cli_reference(tmp_path)
    assert "swapout demo: --samples not on cli/demo/index.html" in problems
