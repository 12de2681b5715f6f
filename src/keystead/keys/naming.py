"""The key naming convention (P1): default `<env>-<service>-<purpose>[-NN]`."""

from __future__ import annotations

import re
from dataclasses import dataclass

from keystead.errors import InvalidField

__all__ = ["NamingRule"]


@dataclass(frozen=True)
class NamingRule:
    pattern: str
    rule: str
    environments: tuple[str, ...]

    def check(self, name: str, env: str | None) -> str:
        """The key's environment, or InvalidField naming the rule that `name` breaks."""
        match = re.fullmatch(self.pattern, name)
        if match is None:
            raise InvalidField(
                f"Key name {name!r} does not follow the naming rule: {self.rule}.",
                param="name", code="invalid_key_name",
            )
        name_env = match.groupdict().get("env")
        if name_env is not None and name_env not in self.environments:
            raise InvalidField(
                f"Key name {name!r} starts with environment {name_env!r}, which is not one of "
                f"{', '.join(self.environments)}.",
                param="name", code="invalid_key_name",
                hint="Use a configured environment or add it under keys.environments.",
            )
        if env is not None and name_env is not None and env != name_env:
            raise InvalidField(
                f"Key name {name!r} says environment {name_env!r} but --env is {env!r}.",
                param="env", code="invalid_key_name",
            )
        resolved = env or name_env
        if resolved is None:
            raise InvalidField("The key needs an environment.", param="env",
                               code="missing_required_parameter",
                               hint=f"Pass one of {', '.join(self.environments)}.")
        if resolved not in self.environments:
            raise InvalidField(f"Environment {resolved!r} is not one of "
                               f"{', '.join(self.environments)}.", param="env")
        return resolved
