"""The embedded backend: a store it cannot open is one line (its URL without the password) and
exit 1, never a traceback."""

from __future__ import annotations

import pytest

from cli.helpers import Project, closed_port


@pytest.mark.parametrize("command", [["keys", "list"], ["providers", "list"]])
def test_an_unreachable_database_is_one_line_without_its_password(project: Project,
                                                                  command: list[str]) -> None:
    url = f"postgresql://keystead:hunter2-secret@127.0.0.1:{closed_port()}/keystead"
    project.config.write_text(project.config.read_text().replace("sqlite:///keystead.db", url))
    result = project.run(*command)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot use the store at postgresql://keystead:***@")
    assert "hunter2-secret" not in result.output and "Traceback" not in result.output


def test_a_sqlite_file_that_cannot_be_made_is_one_line(project: Project) -> None:
    project.config.write_text(project.config.read_text().replace(
        "sqlite:///keystead.db", "sqlite:////proc/no-such-dir/keystead.db"))
    result = project.run("keys", "list")
    assert result.exit_code == 1 and "cannot use the store at sqlite:////proc/" in result.stderr
    assert "Traceback" not in result.output
