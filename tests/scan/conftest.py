"""The CLI tests' fixtures (an isolated environment, a project with its config and store)."""

from cli.conftest import _isolated, project

__all__ = ["_isolated", "project"]
