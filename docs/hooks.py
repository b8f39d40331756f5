"""Build hook: the figures of ``results/`` appear on the site under the same paths (``results/shift/shift.png``),
so that a page shows the figure its run made, from the file committed with that run, and never a copy that
could drift from it. The Results page shows the CPU replication's summary the same way: read at build time
from the README its report wrote beside the runs.

Formulas (``$...$`` inline, ``$$...$$`` displayed, marked by ``pymdownx.arithmatex`` in its generic mode) become
MathML here, at build time, so that browsers typeset them natively: the site needs no script and no network to
show its equations.

The command line's reference (``cli/<command>.md``, one page per command) is generated from the parsers that
``swapout`` itself builds, so that it says what ``swapout <command> --help`` says."""

import html
import re
from pathlib import Path

from mkdocs.structure.files import File, Files

RESULTS = Path(__file__).resolve().parent.parent / "results"


def on_files(files: Files, config) -> Files:
    for path in sorted(RESULTS.rglob("*.png")):
        uri = path.relative_to(RESULTS.parent).as_posix()
        files.append(File.generated(config, uri, abs_src_path=str(path)))
    _cli_files(files, config)
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


SECTION_MARKER = re.compile(r"<!-- cpu-replication section: (.+?) -->")


def cpu_replication_section(title: str) -> str:
    """One section of the CPU replication's summary (``### TITLE``), without its heading: Reproduce the paper
    shows it beside the table it measures. A title that the summary lacks fails the build."""
    parts = re.split(r"^### (.+)$", cpu_replication_summary(), flags=re.M)
    sections = dict(zip(parts[1::2], parts[2::2]))
    if title not in sections:
        raise ValueError(f"results/cpu-replication/README.md has no section {title!r}; it has {sorted(sections)}")
    return sections[title].strip()


def on_page_markdown(markdown: str, page, config, files) -> str:
    """The Results page shows the CPU replication's summary as its report drew it from the committed runs; the
    command line's overview lists the commands that the parser has."""
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, cpu_replication_summary())
    markdown = SECTION_MARKER.sub(lambda m: cpu_replication_section(m.group(1)), markdown)
    if CLI_INDEX_MARKER in markdown:
        markdown = markdown.replace(CLI_INDEX_MARKER, cli_index())
    return from_results(markdown)


def from_results(markdown: str) -> str:
    """Links into ``results/`` as the site serves it. A page links a figure by its path in the repository,
    ``../results/...`` from ``docs/``, so that the link works where the Markdown is read as it is (on GitHub); the
    site serves ``results/`` inside the docs' root (`on_files`), one folder up less."""
    return re.sub(r"(\]\()\.\./((?:\.\./)*results/)", r"\1\2", markdown)


# arithmatex (generic mode) leaves each formula as escaped TeX between \\( \\) or \\[ \\] in a span or a div
_FORMULA = re.compile(r'<(span|div) class="arithmatex">\s*\\([(\[])(.*?)\\[)\]]\s*</\1>', re.S)


def to_mathml(content: str) -> str:
    """The page's formulas as MathML, each still inside its ``arithmatex`` element (``docs/check_site.py`` looks
    for TeX left there)."""
    from latex2mathml.converter import convert

    def mathml(match: re.Match) -> str:
        tag, opening, tex = match.groups()
        display = "block" if opening == "[" else "inline"
        return f'<{tag} class="arithmatex">{convert(html.unescape(tex).strip(), display=display)}</{tag}>'

    return _FORMULA.sub(mathml, content)


def on_page_content(content: str, page, config, files) -> str:
    return to_mathml(content)


# --- the command line's reference, from the parsers -------------------------------------------------------------

CLI_INDEX_MARKER = "<!-- cli commands -->"


def _subcommands():
    """{name: (one-line help, parser)} of ``swapout``'s commands, in the order ``swapout --help`` lists them."""
    import argparse

    from swapout.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    helps = {choice.dest: choice.help for choice in sub._choices_actions}
    return {name: (helps.get(name, ""), parser) for name, parser in sub.choices.items()}


def _text(value: str) -> str:
    """Help text as Markdown that shows it verbatim: no tags (``<split>``), emphasis or table cells from it."""
    value = html.escape(" ".join(str(value).split()), quote=False)
    value = re.sub(r"([\\`*_|\[\]])", r"\\\1", value)
    # an option named in the text reads as one, and is never broken after its dashes
    return re.sub(r"(?<![\w-])(--?[a-z][a-z0-9-]*)", r"`\1`", value)


def _default(action) -> str:
    """What an option takes when it is not given: its help's ``default: ...``, else argparse's default."""
    import argparse

    found = re.search(r"default: (.+?)(?:;|$)", action.help or "")
    if found:
        return f"`{found.group(1).strip()}`"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if action.default is False else "on"
    if action.default in (None, argparse.SUPPRESS) or action.default == []:
        return "-"
    return f"`{action.default}`"


def _value(action) -> str:
    if not action.option_strings or action.nargs == 0:
        return ""
    if action.choices:
        return " \\| ".join(f"`{c}`" for c in action.choices)
    return f"`{action.metavar or action.dest.upper()}`"


def cli_page(name: str, summary: str, parser) -> str:
    """The reference page of ``swapout NAME``: its usage, description and every argument with its help and
    default, grouped as ``swapout NAME --help`` groups them."""
    import argparse

    formatter = argparse.HelpFormatter(prog=parser.prog, width=88)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    usage = formatter.format_help().strip()
    lines = [f"# swapout {name}", "", _text(summary[:1].upper() + summary[1:]) + ".", "", "```text", usage, "```", ""]
    if parser.description:
        lines += [_text(parser.description), ""]
    lines += ["Generated from the command's parser when this site is built: it lists what "
              f"`swapout {name} --help` lists.", ""]
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        lines += [f"## {group.title[:1].upper() + group.title[1:]}", ""]
        if group.description:
            lines += [_text(group.description), ""]
        lines += ["| argument | value | default | what it does |", "| --- | --- | --- | --- |"]
        for action in actions:
            names = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.metavar or action.dest}`"
            help_text = formatter._expand_help(action) if action.help else ""
            lines.append(f"| {names} | {_value(action)} | {_default(action)} | {_text(help_text)} |")
        lines.append("")
    return "\n".join(lines)


def cli_index() -> str:
    """The table of commands on ``cli/index.md``, each with its one-line help."""
    rows = [f"| [`swapout {name}`]({name}.md) | {_text(summary)} |" for name, (summary, _) in _subcommands().items()]
    return "\n".join(["| command | what it does |", "| --- | --- |", *rows])


def _cli_files(files: Files, config) -> None:
    for name, (summary, parser) in _subcommands().items():
        files.append(File.generated(config, f"cli/{name}.md", content=cli_page(name, summary, parser)))
