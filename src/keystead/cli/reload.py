"""`keystead reload`: every gateway re-reads its own config file; print what each one did.

With --server, the gateway at that URL reloads first (a bad file is refused there, and nobody
else is asked); without, the config this command found is validated first, then every gateway
on its store is asked through the store (and Redis). Either way each gateway records the outcome
as a `config.reload` event, which is what this command prints after `--wait`.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from keystead.cli.context import State, friendly

__all__ = ["COMMANDS"]

_KIND = "config.reload"


@click.command("reload")
@click.option("--wait", default="3s", show_default=True,
              help="How long to collect the gateways' answers (e.g. 10s).")
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON.")
@click.pass_obj
@friendly
def reload(state: State, wait: str, as_json: bool) -> None:
    """Make every gateway re-read its config file (same as SIGHUP, on every replica)."""
    from keystead.cli.output import echo_json
    from keystead.durations import parse_duration

    try:
        wait_s = parse_duration(wait)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--wait") from None
    if not state.server:
        state.loaded()  # a bad local file stops here, naming the key and the fix
    backend = state.backend()
    before = max((e["id"] for e in backend.events({"kind": _KIND, "limit": 1})), default=0)
    asked = backend.reload_config()
    time.sleep(wait_s)
    answers = sorted((e for e in backend.events({"kind": _KIND, "limit": 10_000})
                      if e["id"] > before), key=lambda e: e["id"])
    if as_json:
        echo_json({"asked": asked, "gateways": [{"ts": e["ts"], **e["detail"]}
                                                 for e in answers]})
    else:
        click.echo(f"other gateways: {asked['others']}")
        for answer in answers:
            click.echo(_line(answer["detail"]))
        if not answers:
            click.echo(f"no gateway answered within {wait}: is one running on this store "
                       "(database.url)? Wait longer with --wait.")
    if not answers or not all(e["detail"].get("ok") for e in answers):
        sys.exit(1)


def _line(detail: dict[str, Any]) -> str:
    who = f"{detail.get('replica')} ({detail.get('trigger')})"
    if not detail.get("ok"):
        return f"{who}: REFUSED, running config kept: {detail.get('error')}"
    changed, restart = detail.get("changed") or [], detail.get("restart_needed") or []
    text = f"{who}: file {detail.get('digest')}; "
    text += "applied " + ", ".join(changed) if changed else "nothing to apply"
    if restart:
        text += "; changed but kept until a restart: " + ", ".join(restart)
    return text


COMMANDS = [reload]
