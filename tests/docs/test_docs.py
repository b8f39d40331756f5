"""The docs and the README: their code blocks run (the conftest.py at the top collects them), and this file
shows that this matters: a public function renamed in a copy of the package makes a page fail. Also: every
block left out says why, and the README stays a front page."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SKIP = re.compile(r"<!--\s*skip:\s*(\w+)(.*?)-->", re.S)


def test_every_block_left_out_says_why():
    found = 0
    for page in PAGES:
        for action, arguments in SKIP.findall(page.read_text()):
            found += 1
            assert action == "next", f"{page.name}: skip {action}: skip one block at a time, saying why"
            assert re.fullmatch(r'\s*("[^"]+"|if\(.+,\s*reason="[^"]+"\))\s*', arguments), \
                f"{page.name}: 'skip: next{arguments}' gives no reason"
    assert found  # the pattern does find the directives the pages use


def test_the_readme_is_a_front_page_with_both_set_up_commands_first():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    first_block = re.search(r"```bash\n(.*?)```", text, re.S).group(1).splitlines()
    assert first_block == ["pip install torch==2.13.0 && pip install -e . && swapout train --preset short/quickstart",
                           "pip install torch==2.13.0 && pip install -e '.[test]' && python -m pytest -q"]
    # CI runs the same test command
    assert (ROOT / ".ci" / "run").read_text().rstrip().endswith("python -m pytest -q")


def _run_page(page: Path, package_root: Path):
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(page)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)


def test_renaming_a_public_function_fails_the_docs(tmp_path):
    # a consistent rename in a copy of the package: the package still imports and works, so every block of the
    # page passes but the one that calls swapout.predict, which fails, naming it
    shutil.copytree(ROOT / "src" / "swapout", tmp_path / "swapout", ignore=shutil.ignore_patterns("__pycache__"))
    for path in (tmp_path / "swapout").rglob("*.py"):
        path.write_text(re.sub(r"\bpredict\b", "predict_mean", path.read_text()))
    page = ROOT / "docs" / "layer.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    calling = [i for i, block in enumerate(blocks) if "swapout.predict(" in block]
    assert len(calling) == 1 and len(blocks) >= 3
    renamed = _run_page(page, tmp_path)
    assert renamed.returncode == 1, renamed.stdout[-3000:]
    assert f"1 failed, {len(blocks) - 1} passed" in renamed.stdout, renamed.stdout[-3000:]
    assert "has no attribute 'predict'" in renamed.stdout, renamed.stdout[-3000:]


def test_the_readmes_links_into_the_site_lead_to_pages():
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text())
    assert len(links) >= 10
    assert [link for link in links if not (ROOT / link).is_file()] == []


def test_figures_linked_from_the_pages_exist_where_github_looks():
    # a page's image path is read from docs/ on GitHub, and the site maps ../results/ to the copy it serves
    # (docs/hooks.py)
    images = [(page.name, path) for page in PAGES[1:]
              for path in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", page.read_text()) if not path.startswith("http")]
    assert images, "the pattern finds the pages' figures"
    assert [(name, path) for name, path in images if not (ROOT / "docs" / path).is_file()] == []


def test_every_tutorial_links_into_the_reference():
    import yaml

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    tutorials = next(item["Tutorials"] for item in nav if isinstance(item, dict) and "Tutorials" in item)
    pages = [next(iter(entry.values())) for entry in tutorials]
    assert len(pages) >= 8
    # an autorefs link to an API entry ([text][swapout.name]) or a link to a command's page
    linked = re.compile(r"\]\[swapout\.[\w.]+\]|\]\(cli/\w+\.md")
    unlinked = [page for page in pages if not linked.search((ROOT / "docs" / page).read_text())]
    assert unlinked == [], f"tutorials with no link into the reference: {unlinked}"
