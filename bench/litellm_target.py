"""LiteLLM's proxy as the peer: pinned, in its own venv, configured like keystead's bench run.

One model (`gpt-4o-mini` -> `openai/gpt-4o-mini` at the fake upstream), a master key so that
requests need a bearer key, no database, no callbacks, errors-only logging, and nothing fetched
from the internet at start (LiteLLM fetches its price map and other JSON from GitHub unless told
to use the copies it ships).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.load import CHAT_BODY
from bench.procs import Proc, free_port, wait_http
from bench.targets import Target

# The newest release whose `litellm[proxy]` resolves from PyPI on Python 3.11 here: 1.103.8 up
# to 1.109.1 require certifi>=2026.10.19, which PyPI does not offer (yet).
LITELLM_VERSION = "1.103.7"
MASTER_KEY = "sk-bench-master"
CACHE = Path(__file__).parent / ".cache"

# Use the JSON files LiteLLM ships instead of fetching them from GitHub, don't read a .env.
_OFFLINE_ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_LOCAL_ANTHROPIC_BETA_HEADERS": "True",
    "LITELLM_LOCAL_BLOG_POSTS": "True",
    "LITELLM_LOCAL_POLICY_TEMPLATES": "True",
    "LITELLM_LOCAL_AUTOROUTER_PRESETS": "True",
    "LITELLM_MODE": "PRODUCTION",
    "LITELLM_LOG": "ERROR",
}


def litellm_venv(version: str = LITELLM_VERSION) -> Path:
    """The venv with `litellm[proxy]==version`, installed on first use (~1.5 min, ~700 MB)."""
    venv = CACHE / f"litellm-{version}"
    done = venv / ".installed"
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # left by an install that did not finish
    venv.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    print(f"installing litellm[proxy]=={version} into {venv} ...", file=sys.stderr)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                          f"litellm[proxy]=={version}"], capture_output=True, text=True)
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        why = [line for line in (pip.stderr + pip.stdout).splitlines()
               if line.strip() and not line.startswith("WARNING:")]
        raise RuntimeError(f"pip could not install litellm[proxy]=={version} "
                           f"(exit {pip.returncode}):\n" + "\n".join(why[-15:]))
    done.write_text(f"litellm[proxy]=={version}\n")
    return venv


def start_litellm(upstream_base_url: str, *, cpu: str | None) -> Target:
    """`litellm --config ... --num_workers 1`: one uvicorn process, pinned to `cpu`."""
    venv = litellm_venv()
    root = Path(tempfile.mkdtemp(prefix="keystead-bench-litellm-"))
    config = root / "config.yaml"
    config.write_text(f"""model_list:
  - model_name: gpt-4o-mini
    litellm_params:
      model: openai/gpt-4o-mini
      api_base: {upstream_base_url}/v1
      api_key: sk-bench-upstream
litellm_settings:
  telemetry: false
  set_verbose: false
general_settings:
  master_key: {MASTER_KEY}
""")
    port = free_port()
    # `env -u`: with DATABASE_URL set (even empty) LiteLLM would try to reach a database.
    command = ["env", "-u", "DATABASE_URL", "-u", "DIRECT_URL", str(venv / "bin" / "litellm"),
               "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
               "--num_workers", "1", "--telemetry", "False"]
    started = time.perf_counter()
    proc = Proc.start("litellm", command, cpu=cpu, env=_OFFLINE_ENV, cwd=str(root))
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    while True:
        try:
            wait_http(url, method="POST", body=CHAT_BODY.encode(),
                      headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=1.0)
            break
        except TimeoutError:
            if proc.popen.poll() is not None or time.perf_counter() - started > 120:
                proc.stop()
                raise RuntimeError(f"LiteLLM did not answer 200 at {url} "
                                   f"(exit code {proc.popen.returncode}); see {proc.log}"
                                   ) from None
    return Target(f"litellm {LITELLM_VERSION}", url, MASTER_KEY, proc,
                  round(time.perf_counter() - started, 3))
