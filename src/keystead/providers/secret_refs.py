"""Provider keys kept elsewhere: one resolver per reference scheme, behind `resolve_reference`.

    env:VAR                      an environment variable of the gateway process
    vault:NAME                   keystead's own vault (sealed with the master key)
    file:PATH                    a file's contents, stripped (a mounted Kubernetes/Docker secret)
    aws-sm:SECRET_ID[#FIELD]     AWS Secrets Manager; FIELD picks a key of a JSON secret
    hcvault:MOUNT/PATH#FIELD     HashiCorp Vault KV v2: GET {VAULT_ADDR}/v1/MOUNT/data/PATH

Errors are `VaultError`s naming the provider and the reference, never a secret value. Only the
reference is ever stored or printed; the value lives in the provider built from it.

keystead's own secrets are never a provider key, however they are referenced (`ref_policy`): an
`env:KEYSTEAD_*` or `file:` naming keystead's own files is refused before it is read, and a value
read is refused when it is the vault's master key, the value of a `KEYSTEAD_*` variable, or not
one line of printable ASCII (a key is; an environment file or a PEM is not).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from keystead.providers.ref_policy import own_secret, own_variable
from keystead.vault.envelope import MasterKey, VaultError

if TYPE_CHECKING:
    from keystead.vault.store import Vault

__all__ = ["EXTERNAL_SCHEMES", "SecretRefError", "check_reference", "is_external",
           "resolve_reference"]

# Schemes whose value can change outside keystead: re-read on the secret_stores.refresh_s schedule.
EXTERNAL_SCHEMES = ("env:", "file:", "aws-sm:", "hcvault:")
_SYNTAX = {
    "env": re.compile(r"env:[A-Za-z_][A-Za-z0-9_]*"),
    "vault": re.compile(r"vault:[\w.:-]+"),
    "file": re.compile(r"file:\S+"),
    "aws-sm": re.compile(r"aws-sm:[^\s#]+(#[^\s#]+)?"),
    "hcvault": re.compile(r"hcvault:[^\s#/]+/[^\s#]+#[^\s#]+"),
}
_FORMS = ("env:VAR, vault:NAME, file:PATH, aws-sm:SECRET_ID[#FIELD] or "
          "hcvault:MOUNT/PATH#FIELD")
_HTTP_TIMEOUT_S = 10.0
_ONE_LINE = re.compile(r"[\x21-\x7e]+")


class SecretRefError(VaultError):
    """A reference that cannot be resolved now (missing, refused, unreachable, malformed)."""


def is_external(ref: str | None) -> bool:
    return ref is not None and ref.startswith(EXTERNAL_SCHEMES)


def check_reference(ref: str) -> str:
    """`ref` if it is well formed; else ValueError saying which forms are accepted."""
    scheme = ref.split(":", 1)[0]
    syntax = _SYNTAX.get(scheme)
    if syntax is None or not syntax.fullmatch(ref):
        raise ValueError(f"{ref!r} is not a key reference; write {_FORMS}")
    return ref


async def resolve_reference(owner: str, ref: str, vault: Vault | None = None) -> str:
    """The secret `ref` points to. `owner` (a provider name) only labels errors."""
    try:
        check_reference(ref)
    except ValueError as exc:
        raise SecretRefError(f"provider {owner}: {exc}") from None
    scheme, _, rest = ref.partition(":")
    where = f"provider {owner}: {ref}"
    own = own_secret(ref)
    if own is not None:
        raise SecretRefError(f"{where}: {own}")
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise SecretRefError(f"provider {owner}: environment variable {rest} is not set")
    elif scheme == "vault":
        if vault is None:
            raise SecretRefError(f"provider {owner}: its key is in the vault, but no master key "
                                 "is configured")
        value = (await vault.get(rest)).decode()
    elif scheme == "file":
        value = _read_file(where, rest)
    elif scheme == "aws-sm":
        secret_id, _, field = rest.partition("#")
        value = await asyncio.to_thread(_aws_secret, where, secret_id, field or None)
    else:
        path, _, field = rest.partition("#")
        mount, _, path = path.partition("/")
        value = await _hcvault_secret(where, mount, path, field)
    if scheme != "vault":  # (what the vault holds was given by value, to be sent)
        why = _own_value(value, vault)
        if why is not None:
            raise SecretRefError(f"{where}: the value read {why}, never a provider key")
    return value


def _own_value(value: str, vault: Vault | None) -> str | None:
    """Why a value read from a reference cannot be a provider key, or None."""
    if _ONE_LINE.fullmatch(value) is None:
        return "is not one line of printable ASCII (a key is)"
    for name, other in os.environ.items():
        if own_variable(name) and other and other.strip() == value:
            return f"is the value of keystead's own {name}"
    if vault is not None and len(value) in (43, 44):  # 32 bytes in base64
        try:
            if MasterKey.from_text(value).key_id == vault.master_key_id:
                return "is the vault's master key"
        except VaultError:
            pass
    return None


def _non_empty(where: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise SecretRefError(f"{where}: the secret is empty")
    return value


def _read_file(where: str, name: str) -> str:
    path = Path(name).expanduser()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise SecretRefError(f"{where}: the file {path} does not exist") from None
    except IsADirectoryError:
        raise SecretRefError(f"{where}: {path} is a directory, not a file") from None
    except PermissionError:
        raise SecretRefError(f"{where}: the file {path} is not readable by this process "
                             "(permission denied)") from None
    except OSError as exc:  # strerror only: never the contents
        raise SecretRefError(f"{where}: cannot read {path}: {exc.strerror}") from None
    try:
        return _non_empty(where, data.decode("utf-8"))
    except UnicodeDecodeError:
        raise SecretRefError(f"{where}: the file {path} is not UTF-8 text") from None


def _pick(where: str, text: str, field: str | None) -> str:
    if field is None:
        return _non_empty(where, text)
    try:
        document = json.loads(text)
    except ValueError:
        raise SecretRefError(f"{where}: the secret is not JSON, so it has no field "
                             f"{field!r}") from None
    if not isinstance(document, dict) or field not in document:
        names = ", ".join(sorted(document)) if isinstance(document, dict) else "none"
        raise SecretRefError(f"{where}: the secret has no field {field!r} (fields: {names})")
    value = document[field]
    if not isinstance(value, str):
        raise SecretRefError(f"{where}: the field {field!r} is not a string")
    return _non_empty(where, value)


def _aws_secret(where: str, secret_id: str, field: str | None) -> str:
    """GetSecretValue, in a worker thread: boto3 is synchronous (and imported only here)."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )
    except ImportError:
        raise SecretRefError(f"{where}: boto3 is not installed (pip install boto3)") from None
    env = os.environ
    region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    endpoint = env.get("AWS_ENDPOINT_URL_SECRETS_MANAGER") or env.get("AWS_ENDPOINT_URL")
    try:
        client = boto3.session.Session().client("secretsmanager", region_name=region,
                                                endpoint_url=endpoint or None)
        reply: dict[str, Any] = client.get_secret_value(SecretId=secret_id)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        hint = {"ResourceNotFoundException": "no such secret (check the name and the region)",
                "AccessDeniedException": "the AWS credentials may not read it",
                "DecryptionFailure": "its KMS key may not be used by these credentials"}
        raise SecretRefError(f"{where}: AWS Secrets Manager: {code}: "
                             f"{hint.get(code, 'the request failed')}") from None
    except BotoCoreError as exc:  # no region, no credentials, endpoint unreachable
        raise SecretRefError(f"{where}: AWS Secrets Manager: {type(exc).__name__}: "
                             f"{exc}") from None
    if "SecretString" in reply:
        text = reply["SecretString"]
    else:
        try:
            text = bytes(reply.get("SecretBinary") or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise SecretRefError(f"{where}: the secret is binary, not text") from None
    return _pick(where, text, field)


async def _hcvault_secret(where: str, mount: str, path: str, field: str) -> str:
    import aiohttp

    addr = os.environ.get("VAULT_ADDR")
    token = os.environ.get("VAULT_TOKEN")
    if not addr:
        raise SecretRefError(f"{where}: VAULT_ADDR is not set (e.g. https://vault.internal:8200)")
    if not token:
        raise SecretRefError(f"{where}: VAULT_TOKEN is not set")
    headers = {"X-Vault-Token": token}
    if os.environ.get("VAULT_NAMESPACE"):
        headers["X-Vault-Namespace"] = os.environ["VAULT_NAMESPACE"]
    url = f"{addr.rstrip('/')}/v1/{mount}/data/{path}"
    timeout = aiohttp.ClientTimeout(total=_HTTP_TIMEOUT_S)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, \
                session.get(url, headers=headers) as response:
            status = response.status
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise SecretRefError(f"{where}: Vault at {addr} is unreachable: "
                             f"{type(exc).__name__}") from None
    if status == 200:
        try:
            data = json.loads(body)["data"]["data"]
        except (ValueError, KeyError, TypeError):
            raise SecretRefError(f"{where}: Vault's reply is not a KV v2 secret (is {mount} a "
                                 "KV version 2 mount?)") from None
        return _pick(where, json.dumps(data), field)
    if status == 403:
        raise SecretRefError(f"{where}: Vault refused the token (403): it is invalid, expired, "
                             "or its policy does not allow reading this path")
    if status == 404:
        raise SecretRefError(f"{where}: Vault has no secret at {mount}/{path} (404)")
    raise SecretRefError(f"{where}: Vault answered HTTP {status}")
