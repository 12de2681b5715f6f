"""--server: the admin token from the flag, the environment or the config (read without
validating the rest of it), and a URL that is not one."""

from __future__ import annotations

from pathlib import Path

from cli.helpers import ADMIN_TOKEN, Remote, invoke


def _site(tmp_path: Path, config: str, dotenv: str = "") -> Path:
    (tmp_path / "keystead.yaml").write_text(config)
    if dotenv:
        (tmp_path / ".env").write_text(dotenv)
    return tmp_path / "keystead.yaml"


def test_the_token_comes_from_the_config_and_its_env(remote: Remote, tmp_path: Path) -> None:
    config = _site(tmp_path, "admin:\n  token: ${MY_GATEWAY_TOKEN}\nservr: {}\n",
                   f"MY_GATEWAY_TOKEN={ADMIN_TOKEN}\n")
    # `servr` is an unknown setting: --server needs only the token, so it does not matter here
    result = invoke("--config", str(config), "--server", remote.url, "keys", "list")
    assert result.exit_code == 0, result.output
    assert "no keys yet" in result.stdout


def test_the_token_falls_back_to_keystead_admin_token_in_the_env(remote: Remote,
                                                                 tmp_path: Path) -> None:
    config = _site(tmp_path, "{}\n", f"KEYSTEAD_ADMIN_TOKEN={ADMIN_TOKEN}\n")
    result = invoke("--config", str(config), "--server", remote.url, "teams", "list")
    assert result.exit_code == 0, result.output


def test_a_raw_token_in_the_config_is_not_used(remote: Remote, tmp_path: Path) -> None:
    config = _site(tmp_path, f"admin:\n  token: {ADMIN_TOKEN}\n")
    result = invoke("--config", str(config), "--server", remote.url, "keys", "list")
    assert result.exit_code == 2 and "needs the admin token" in result.stderr
    assert ADMIN_TOKEN not in result.output


def test_a_wrong_token_is_refused_with_the_gateways_words(remote: Remote) -> None:
    result = remote.run("keys", "list", token="not-the-token")
    assert result.exit_code == 1 and result.stderr.startswith("error: ")
