"""The command line's surface: -h and --help everywhere, --version, and the flags a night shares."""

import dataclasses

import pytest
import typer
from typer.testing import CliRunner

from jobs import cli
from jobs.nightly import NightOptions

COMMAND = typer.main.get_command(cli.app)
NIGHT_FLAGS = [field.name for field in dataclasses.fields(NightOptions)]


def command_paths(group, prefix: tuple[str, ...] = ()):
    """Every command and group below `group`, as the words a user types."""
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):  # a group
            yield from command_paths(command, (*prefix, name))


def invoke(*args: str):
    return CliRunner().invoke(cli.app, list(args), prog_name="segment")


@pytest.mark.parametrize("path", [(), *command_paths(COMMAND)], ids=lambda path: " ".join(path) or "segment")
def test_every_command_prints_its_usage_with_h_and_with_help(path):
    short, long = invoke(*path, "-h"), invoke(*path, "--help")
    assert short.exit_code == 0 and long.exit_code == 0, short.output
    assert short.output == long.output
    assert short.output.startswith(f"Usage: {' '.join(('segment', *path))} ")


def test_version_prints_the_installed_distributions_version():
    from importlib.metadata import version

    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output == f"segment (pg-customer-segments) {version('pg-customer-segments')}\n"


def options_of(*path: str) -> dict[str, tuple[str, ...]]:
    command = COMMAND
    for name in path:
        command = command.commands[name]
    return {parameter.name: tuple(parameter.opts) for parameter in command.params}


@pytest.mark.parametrize("path", [("schedule",), ("ops", "systemd"), ("ops", "cron")])
def test_commands_that_run_a_night_take_every_flag_of_segment_run(path):
    run = options_of("run")
    # --preview publishes nothing: a one-off look at another k, never a scheduled night
    assert sorted(run) == sorted([*NIGHT_FLAGS, "preview"])
    others = options_of(*path)
    assert "preview" not in others
    assert {name: others[name] for name in run if name != "preview"} == {
        name: flags for name, flags in run.items() if name != "preview"}


def test_the_night_options_become_the_same_run_command_line_again(tmp_path):
    given = NightOptions(csv=tmp_path / "c.csv", features="income,balance", k=4, random_state=7, force_publish=True)
    line = given.command_line()
    assert line == ["--csv", str(tmp_path / "c.csv"), "--features", "income,balance", "--k", "4", "--seed", "7",
                    "--force-publish"]
    parsed = {}
    cli.night_options(lambda options: parsed.setdefault("options", options))(**{
        field: value for field, value in zip(
            NIGHT_FLAGS, (tmp_path / "c.csv", None, "income,balance", 4, 7, None, True, None, False), strict=True
        )
    })
    assert parsed["options"] == given
    assert given.setting_flags() == {"features": "income,balance", "k": 4, "random_state": 7, "export_mode": None,
                                     "force_publish": True, "segmentation": None}


def test_the_documented_exit_codes_are_the_ones_the_command_line_ends_with():
    import re

    from segmentation import errors
    from tests.conftest import REPOSITORY

    text = (REPOSITORY / "docs" / "operations.md").read_text()
    table = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", table, flags=re.MULTILINE)}

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    raised = {cls.exit_code for cls in subclasses(errors.SegmentationError)}
    signals = {cli.notify.exit_code_of(KeyboardInterrupt()), cli.notify.exit_code_of(errors.Cancelled())}
    usage = invoke("run", "--bogus").exit_code
    assert documented == {0, 1, usage} | raised | signals == {0, 1, 2, 3, 4, 5, 6, 7, 8, 130, 143}
