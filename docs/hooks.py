"""Build hook: the figures of ``results/`` appear on the site under the same paths (``results/shift/shift.png``),
so that a page shows the figure its run made, from the file committed with that run, and never a copy that
could drift from it."""

from pathlib import Path

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "results"


def on_files(files: Files, config) -> Files:
    for path in sorted(RESULTS.rglob("*.png")):
        uri = path.relative_to(RESULTS.parent).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files
