"""`providers add --api-key-ref` through a running gateway (--server): only the reference is
stored, and the gateway reads the key from it."""

from __future__ import annotations

import json
import time
from pathlib import Path

from cli.helpers import Project, Remote, serving
from keystead.config.load import LoadedConfig
from keystead.config.model import AdminSecretRefs


def test_remote_add_with_an_external_reference(project: Project, tmp_path: Path) -> None:
    secret = tmp_path / "provider.key"
    secret.write_text("sk-external-store-0123456789abcdef\n")
    add = ("providers", "add", "external", "--type", "openai-compatible", "--base-url",
           "http://127.0.0.1:9/v1", "--models", "ext-model", "--api-key-ref", f"file:{secret}")
    with serving(project.loaded()) as remote:  # by default the admin API may name no file
        refused = remote.run(*add)
        assert refused.exit_code != 0
        assert "admin.secret_refs.allow_file_dirs" in refused.output
    loaded = project.loaded()
    admin = loaded.config.admin.model_copy(
        update={"secret_refs": AdminSecretRefs(allow_file_dirs=(str(tmp_path),))})
    allowing = LoadedConfig(loaded.config.model_copy(update={"admin": admin}), loaded.path,
                            loaded.base_dir)
    with serving(allowing) as remote:
        _add_and_read(project, remote, add, secret)


def _add_and_read(project: Project, remote: Remote, add: tuple[str, ...], secret: Path) -> None:
    remote.ok(*add)
    listed = json.loads(remote.ok("providers", "list", "--format", "json").stdout)
    (row,) = [p for p in listed if p["name"] == "external"]
    assert f"file:{secret}" in json.dumps(row)
    provider = remote.runtime.providers.providers["external"]
    assert provider.keys.secrets == ("sk-external-store-0123456789abcdef",)  # read from the file
    assert b"sk-external-store" not in project.stored_bytes()
    bad = remote.run("providers", "add", "other", "--type", "openai-compatible", "--base-url",
                     "http://127.0.0.1:9/v1", "--api-key-ref", "s3:bucket/key")
    assert bad.exit_code == 2


def test_set_key_replaces_a_vault_key_embedded_and_remote(project: Project,
                                                         remote: Remote) -> None:
    project.ok("providers", "add", "sealed", "--type", "openai-compatible", "--base-url",
               "http://127.0.0.1:9/v1", "--models", "m1", "--api-key-stdin",
               input="sk-first-key-0123456789\n")
    result = project.ok("providers", "set-key", "sealed", input="sk-second-key-0123456789\n")
    assert "new key in place" in result.stdout
    assert b"sk-second-key" not in project.stored_bytes()
    # The running gateway on the same store picks the new key up by itself (version poll).
    deadline = time.monotonic() + 5
    while getattr(remote.runtime.providers.providers.get("sealed"), "keys", None) is None \
            or remote.runtime.providers.providers["sealed"].keys.secrets != \
            ("sk-second-key-0123456789",):
        assert time.monotonic() < deadline, "the gateway kept the old key"
        time.sleep(0.05)
    assert project.run("providers", "set-key", "sealed", input="\n").exit_code == 2
    assert project.run("providers", "set-key", "nope", input="sk-x\n").exit_code == 1
