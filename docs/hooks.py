"""Build hook: the figures of ``results/`` appear on the site under the same paths (``results/shift/shift.png``),
so that a page shows the figure its run made, from the file committed with that run, and never a copy that
could drift from it. The Results page shows the CPU replication's summary the same way: read at build time
from the README its report wrote beside the runs."""

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "results"


def on_files(files: Files, config) -> Files:
    for path in sorted(RESULTS.rglob("*.png")):
        uri = path.relative_to(RESULTS.parent).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


CPU_REPLICATION = RESULTS / "cpu-replication"
MARKER = "<!-- cpu-replication summary -->"


def cpu_replication_summary() -> str:
    """The tables, figures and claims of ``results/cpu-replication/README.md`` (between its summary markers),
    with its figures' paths made relative to the docs' root, where the Results page is."""
    text = (CPU_REPLICATION / "README.md").read_text()
    body = text.split("<!-- summary -->", 1)[1].split("<!-- /summary -->", 1)[0]
    prefix = CPU_REPLICATION.relative_to(RESULTS.parent).as_posix()
    return re.sub(r"(!\[[^\]]*\]\()(?!https?:|/)([^)]+\))", rf"\1{prefix}/\2", body)


def on_page_markdown(markdown: str, page, config, files) -> str:
    """The Results page shows the CPU replication's summary as its report drew it from the committed runs."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cpu_replication_summary())
    return markdown
