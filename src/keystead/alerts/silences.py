"""Silences: no message for a rule ("budget") or for one alert ("budget:team:x:2026-12:80")
until a time. Alerts still fire and resolve underneath (`keystead alerts list` shows them)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from keystead.config.alerts import RULE_NAMES
from keystead.state.records import SilenceRecord

__all__ = ["check_target", "silenced"]

_SUBJECT = re.compile(r"[A-Za-z0-9_.:/#@-]{1,200}")


def silenced(silences: Iterable[SilenceRecord], rule: str, subject: str) -> bool:
    return any(s.target in (rule, f"{rule}:{subject}") for s in silences)


def check_target(target: str) -> str:
    """A rule's name, or rule:subject with a subject in the alphabet subjects use. ValueError
    names the rules otherwise."""
    rule, _, subject = target.partition(":")
    if rule not in RULE_NAMES:
        raise ValueError(f"{rule!r} is not a rule; the rules are {', '.join(RULE_NAMES)}")
    if _ and not _SUBJECT.fullmatch(subject):
        raise ValueError("the subject after the rule is as `keystead alerts list` shows it "
                         "(letters, digits and _.:/#@-, at most 200)")
    return target
