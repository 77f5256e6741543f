"""The README and the pages under docs/ say only what the `segment` command and the settings accept.

Every `segment ...` command in a shell code block (```sh, ```bash, ```shell, ```console) of
README.md and docs/*.md is parsed by the Typer app of jobs/cli.py as the shell would hand it
over: its subcommands, options, option values and arguments must be accepted (nothing runs,
no database is needed). A `segment ...` in inline code in the prose is checked for its
subcommands and option names. Every ```toml block must be a valid segment.toml (a fragment of
a column table is completed with an id column), every settings table and every SEGMENT_*
variable must name a setting of segmentation/settings.py, and docs/settings.md must list them all.
Every relative link must reach a file and, with an anchor, one of its headings.
And .ci/run must end with the README's test command.
"""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
import typer.main

from jobs.cli import app
from segmentation import settings as settings_module

REPOSITORY = Path(__file__).resolve().parents[2]
PAGES = (REPOSITORY / "README.md", *sorted((REPOSITORY / "docs").glob("*.md")))
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}
FENCE = re.compile(r"^```(?P<language>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
SEPARATORS = {";", "&&", "||", "|", "&", "(", ")", ";;"}
REDIRECTIONS = {">", ">>", "<", "<<", ">&", "<&", "&>", "|&"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
PLACEHOLDER = re.compile(r"^[A-Z][A-Z0-9_]*$")  # FILE, NAME, RUN_ID, COMMAND in prose
ENVIRONMENT_VARIABLE = re.compile(r"\bSEGMENT_[A-Z0-9_]*[A-Z0-9]\b")
#: SEGMENT_* variables that are not settings: the settings file's path, and what a notify
#: command receives (docs/operations.md, "Notifications")
NOT_SETTINGS = ("SEGMENT_CONFIG", "SEGMENT_RUN_")
SETTING_FIELDS = frozenset(settings_module.Settings.model_fields)
CLI = typer.main.get_command(app)


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    words: tuple[str, ...]  # after the program: ("run", "--csv", "customers.csv")
    program: str
    in_code_block: bool

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.program} {shlex.join(self.words)}"


def _page_name(path: Path) -> str:
    return str(path.relative_to(REPOSITORY))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _shell_lines(body: str) -> list[tuple[int, str]]:
    """A code block's logical lines (backslash continuations joined), with their first line's offset."""
    lines, pending, start = [], "", None
    for number, line in enumerate(body.split("\n")):
        if start is None:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        lines.append((start, pending + line))
        pending, start = "", None
    return lines


def _commands_in(tokens: list[str]) -> list[tuple[str, list[str]]]:
    """The simple commands of one shell line whose program is `segment` (any path) or `python -m jobs.nightly`."""
    found, current = [], []
    for token in [*tokens, ";"]:
        if token in SEPARATORS:
            while current and ASSIGNMENT.match(current[0]):  # SEGMENT_CONFIG=... segment run
                current.pop(0)
            if current and (current[0] == "segment" or current[0].endswith("/segment")):
                found.append((current[0], current[1:]))
            elif len(current) >= 3 and current[0].split("/")[-1].startswith("python") and current[1:3] == ["-m", "jobs.nightly"]:
                found.append((" ".join(current[:3]), current[3:]))
            current = []
        else:
            current.append(token)
    return found


def _without_redirections(words: list[str]) -> list[str]:
    """The words without redirections (`> file`, and `2>/dev/null`, which splits into '2', '>', '/dev/null')."""
    kept, skip = [], False
    for index, word in enumerate(words):
        if skip:
            skip = False
        elif word in REDIRECTIONS:
            skip = True  # the redirection's target
        elif not (word.isdigit() and index + 1 < len(words) and words[index + 1] in REDIRECTIONS):
            kept.append(word)
    return kept


def documented_commands() -> list[Command]:
    commands = []
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        fenced = []
        for block in FENCE.finditer(text):
            fenced.append(block.span())
            if block.group("language") not in SHELL_BLOCKS:
                continue
            first_line = _line_of(text, block.start("body"))
            for offset, line in _shell_lines(block.group("body")):
                lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
                lexer.whitespace_split = True
                lexer.commenters = "#"
                for program, words in _commands_in(list(lexer)):
                    commands.append(Command(_page_name(path), first_line + offset, tuple(_without_redirections(words)),
                                            program, True))
        for span in INLINE_CODE.finditer(text):
            if any(start <= span.start() < end for start, end in fenced):
                continue
            code = span.group("code").strip()
            if not code.startswith("segment "):
                continue
            if any(mark in code for mark in ("...", "…", "|", "<", "{")):
                continue  # a pattern, not a command
            code = re.sub(r"\[[^\]]*\]", " ", code)  # [RUN_ID], [--out FILE]: optional parts
            words = code.split()[1:]
            commands.append(Command(_page_name(path), _line_of(text, span.start()), tuple(words), "segment", False))
    return commands


COMMANDS = documented_commands()


def _option_names(command) -> set[str]:
    names = set()
    for parameter in command.params:
        names.update(getattr(parameter, "opts", ()))
        names.update(getattr(parameter, "secondary_opts", ()))
    return names | {"-h", "--help"}


def _option_takes_value(command, name: str) -> bool:
    for parameter in command.params:
        if name in getattr(parameter, "opts", ()) or name in getattr(parameter, "secondary_opts", ()):
            return not getattr(parameter, "is_flag", False) and not getattr(parameter, "count", False)
    return False


def names_problem(words: tuple[str, ...]) -> str | None:
    """Why the subcommands or option names of `segment WORDS` do not exist (None: they do)."""
    command, words = CLI, list(words)
    while words:
        word = words.pop(0)
        subcommands = getattr(command, "commands", None)
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            if name not in _option_names(command):
                return f"no option {name} for {command.name or 'segment'}"
            if "=" not in word and _option_takes_value(command, name) and words:
                words.pop(0)
        elif subcommands is not None:
            if PLACEHOLDER.match(word):
                return None  # `segment COMMAND -h`
            if word not in subcommands:
                return f"no command {word!r} in {command.name or 'segment'} (it has {', '.join(sorted(subcommands))})"
            command = subcommands[word]
    return None


def parse_problem(words: tuple[str, ...]) -> str | None:
    """Why the app would refuse `segment WORDS` before running anything (None: it parses).

    Parses as Click does when invoked (each group's context, then its subcommand's), which
    checks option values and arguments too; -h / --help and --version stop the parse there,
    as they stop the command.
    """
    problem = names_problem(words)
    if problem:
        return problem
    command, args, parent = CLI, list(words), None
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            while True:
                context = command.make_context("segment" if parent is None else command.name, list(args), parent=parent)
                if not hasattr(command, "resolve_command"):
                    return None
                rest = [*getattr(context, "_protected_args", getattr(context, "protected_args", [])), *context.args]
                if not rest:
                    return None
                _, command, args = command.resolve_command(context, rest)
                parent = context
        except typer.Exit as stop:  # -h, --help, --version
            return None if stop.exit_code == 0 else f"exit {stop.exit_code}"
        except Exception as error:  # the app's usage errors (vendored Click)
            if type(error).__name__ == "NoArgsIsHelpError":
                return "a group without its subcommand only prints help"
            message = error.format_message() if hasattr(error, "format_message") else str(error)
            return f"{type(error).__name__}: {message}"


def test_the_pages_hold_segment_commands_in_code_blocks_and_in_prose():
    in_blocks = [command for command in COMMANDS if command.in_code_block]
    assert len(in_blocks) >= 30, [str(command) for command in in_blocks]
    assert any(not command.in_code_block for command in COMMANDS)
    assert {command.page for command in in_blocks} >= {"README.md", "docs/operations.md", "docs/segmentations.md"}


def test_every_segment_command_in_a_shell_block_parses_as_the_cli_takes_it():
    refused = [f"{command}: {problem}" for command in COMMANDS if command.in_code_block
               for problem in [parse_problem(command.words)] if problem]
    assert refused == [], "\n".join(refused)


def test_every_segment_command_in_the_prose_names_existing_subcommands_and_options():
    refused = [f"{command}: {problem}" for command in COMMANDS if not command.in_code_block
               for problem in [names_problem(command.words)] if problem]
    assert refused == [], "\n".join(refused)


def test_shell_blocks_call_segment_as_the_readme_first_command_leaves_it_on_the_path():
    """The README's first command activates the venv, so every later command is a bare `segment`
    (or `python -m jobs.nightly`); a path such as .venv/bin/segment would not work in another folder."""
    qualified = [str(command) for command in COMMANDS if command.in_code_block and "/" in command.program
                 and not command.program.split()[0].split("/")[-1].startswith("python")]
    assert qualified == [], "\n".join(qualified)


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (("run", "--csv", "customers.csv", "--k", "4", "--preview"), None),
        (("db", "grant-reader", "metabase"), None),
        (("--version",), None),
        (("run", "--bogus"), "no option --bogus"),
        (("runn",), "no command 'runn'"),
        (("run", "--k", "four"), "Invalid value for '--k'"),
        (("db", "grant-reader"), "Missing argument"),
        (("report", "--out"), "requires an argument"),
    ],
)
def test_the_check_itself_tells_accepted_from_refused_commands(words, expected):
    problem = parse_problem(words)
    if expected is None:
        assert problem is None
    else:
        assert problem is not None and expected in problem, problem


def _toml_blocks() -> list[tuple[str, int, str]]:
    blocks = []
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        for block in FENCE.finditer(text):
            if block.group("language") == "toml":
                blocks.append((_page_name(path), _line_of(text, block.start("body")), block.group("body")))
    return blocks


@pytest.fixture
def no_outside_settings(monkeypatch, tmp_path):
    """Settings from the keyword arguments alone: no SEGMENT_* variable, no segment.toml."""
    import os

    for name in list(os.environ):
        if name.startswith("SEGMENT_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_every_toml_block_is_a_valid_segment_toml(no_outside_settings):
    import tomllib

    blocks = _toml_blocks()
    assert len(blocks) >= 10
    refused = []
    for page, line, body in blocks:
        values = tomllib.loads(body)
        unknown = sorted(set(values) - SETTING_FIELDS)
        if unknown:
            refused.append(f"{page}:{line}: not settings: {', '.join(unknown)}")
            continue
        dataset = values.get("dataset")
        if isinstance(dataset, dict) and "columns" in dataset and "id_column" not in dataset:
            dataset["id_column"] = "customer_id"  # a fragment showing one column's table
        try:
            settings_module.load_settings(**values)
        except Exception as error:
            refused.append(f"{page}:{line}: {error}")
    assert refused == [], "\n".join(refused)


def _settings_tables() -> list[tuple[str, int, list[str]]]:
    """Each markdown table whose first header cell is `setting`: its page, line and first-column names."""
    tables = []
    for path in PAGES:
        lines = path.read_text(encoding="utf-8").split("\n")
        for number, line in enumerate(lines):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if line.startswith("|") and cells[0] == "setting" and number + 1 < len(lines) and lines[number + 1].startswith("| ---"):
                names = []
                for row in lines[number + 2:]:
                    if not row.startswith("|"):
                        break
                    first = row.strip().strip("|").split("|")[0]
                    names += [name.strip(" `") for name in re.split(r"[,/]", first) if name.strip(" `")]
                tables.append((_page_name(path), number + 1, names))
    return tables


def test_every_settings_table_names_real_settings():
    tables = _settings_tables()
    assert {page for page, _, _ in tables} >= {"README.md", "docs/settings.md"}
    unknown = [f"{page}:{line}: {name}" for page, line, names in tables for name in names if name not in SETTING_FIELDS]
    assert unknown == [], "\n".join(unknown)


def test_docs_settings_lists_every_setting():
    listed = {name for page, _, names in _settings_tables() if page == "docs/settings.md"
              for name in names}
    missing = sorted(SETTING_FIELDS - listed)
    assert missing == [], f"settings not in docs/settings.md: {', '.join(missing)}"


def test_every_segment_variable_in_the_pages_is_a_setting():
    unknown = []
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        for found in ENVIRONMENT_VARIABLE.finditer(text):
            name = found.group()
            if name.startswith(NOT_SETTINGS):
                continue
            if name.removeprefix("SEGMENT_").lower() not in SETTING_FIELDS:
                unknown.append(f"{_page_name(path)}:{_line_of(text, found.start())}: {name}")
    assert unknown == [], "\n".join(unknown)


LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")
#: written on another branch of issue 23 (the dashboards); linked before it lands
NOT_YET_MERGED = {"docs/dashboards.md"}


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lowercase, punctuation dropped, spaces as hyphens."""
    text = FENCE.sub("", path.read_text(encoding="utf-8"))
    anchors = set()
    for heading in re.findall(r"^#+ (.+)$", text, flags=re.MULTILINE):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(slug)
    return anchors | {"top"}


def test_every_relative_link_in_the_pages_reaches_a_file_and_heading():
    broken = []
    for path in PAGES:
        text = FENCE.sub(lambda block: "\n" * block.group().count("\n"), path.read_text(encoding="utf-8"))
        for link in LINK.finditer(text):
            target = link.group("target")
            if re.match(r"^[a-z]+:", target):
                continue  # https:, mailto:
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if str(linked.relative_to(REPOSITORY)) in NOT_YET_MERGED and not linked.exists():
                continue
            where = f"{_page_name(path)}:{_line_of(text, link.start())}: {target}"
            if not linked.exists():
                broken.append(f"{where}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                broken.append(f"{where}: no heading #{anchor}")
    assert broken == [], "\n".join(broken)


def test_ci_runs_exactly_the_readme_test_command():
    """The README's second command (the test command) is the last command of .ci/run."""
    readme = (REPOSITORY / "README.md").read_text(encoding="utf-8")
    blocks = [block.group("body").strip() for block in FENCE.finditer(readme) if block.group("language") in SHELL_BLOCKS]
    test_command = blocks[1]  # the two commands are the README's first two shell blocks
    ci = [line.strip() for line in (REPOSITORY / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.strip().startswith("#")]
    assert test_command.startswith(".venv/bin/python -m pytest"), test_command
    assert ci[-1] == test_command
