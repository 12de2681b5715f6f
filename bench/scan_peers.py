"""The secret scanners keystead's is measured against, installed only under bench/.cache/.

- detect-secrets (Yelp), pinned, from PyPI into its own venv: bench/.cache/detect-secrets-<v>/.
- gitleaks: not in Debian bookworm, only in unstable (sid). Its .deb is fetched from Debian's
  archive with apt, using a private apt state under bench/.cache/apt-sid/ (its own sources
  entry, package lists and cache), so the machine's apt configuration is never changed; apt
  checks the .deb against the signed sid index. `dpkg-deb -x` unpacks it into
  bench/.cache/gitleaks-<v>/ and the binary runs from there (Go, needs only glibc >= 2.34).

Neither is a dependency of keystead. `python -m bench.scan_peers` installs what is missing and
prints what it did; running it again does nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

DETECT_SECRETS_VERSION = "1.5.0"
# Debian's version of the gitleaks package in sid when this was written (upstream 8.26.0).
GITLEAKS_DEB_VERSION = "8.26.0-1+b1"
CACHE = Path(__file__).parent / ".cache"
_SID_SOURCES = """Types: deb
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def _say(message: str) -> None:
    print(f"scan_peers: {message}", file=sys.stderr)


def detect_secrets_venv(version: str = DETECT_SECRETS_VERSION) -> Path:
    """The venv holding detect-secrets==version; created on first use (~10 s)."""
    venv = CACHE / f"detect-secrets-{version}"
    done = venv / ".installed"
    if done.exists():
        return venv
    shutil.rmtree(venv, ignore_errors=True)  # left by an install that did not finish
    venv.parent.mkdir(parents=True, exist_ok=True)
    _say(f"creating {venv} and installing detect-secrets=={version} from PyPI")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet",
                          f"detect-secrets=={version}"], capture_output=True, text=True)
    if pip.returncode != 0:
        shutil.rmtree(venv, ignore_errors=True)
        raise RuntimeError(f"pip could not install detect-secrets=={version}:\n"
                           + (pip.stderr + pip.stdout)[-2000:])
    freeze = subprocess.run([str(venv / "bin" / "pip"), "freeze"], capture_output=True,
                            text=True, check=True).stdout
    done.write_text(freeze)
    return venv


def detect_secrets_bin(version: str = DETECT_SECRETS_VERSION) -> Path:
    return detect_secrets_venv(version) / "bin" / "detect-secrets"


def _apt_options(root: Path) -> list[str]:
    return ["-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={root / 'sources.list.d'}",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}",
            # The _apt user may not be able to write into the worktree; the download is still
            # checked against the signed index.
            "-o", "APT::Sandbox::User=root"]


def _download_deb(version: str) -> Path:
    root = CACHE / "apt-sid"
    for sub in ("sources.list.d", "lists/partial", "cache/archives/partial", "debs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "sources.list.d" / "sid.sources").write_text(_SID_SOURCES)
    options = _apt_options(root)
    _say("apt-get update with a private sid sources entry and state under " + str(root))
    subprocess.run(["apt-get", *options, "-q", "update"], check=True, capture_output=True)
    debs = root / "debs"
    _say(f"apt-get download gitleaks={version}")
    got = subprocess.run(["apt-get", *options, "download", f"gitleaks={version}"],
                         cwd=debs, capture_output=True, text=True)
    if got.returncode != 0:
        policy = subprocess.run(["apt-cache", *options, "policy", "gitleaks"],
                                capture_output=True, text=True).stdout
        raise RuntimeError(f"apt-get download gitleaks={version} failed: {got.stderr.strip()}\n"
                           f"sid offers:\n{policy}(set GITLEAKS_DEB_VERSION in "
                           "bench/scan_peers.py to the candidate to use it)")
    found = sorted(debs.glob("gitleaks_*.deb"))
    deb = next(d for d in found if d.name.startswith(f"gitleaks_{version.replace(':', '%3a')}_"))
    return deb


def gitleaks_dir(version: str = GITLEAKS_DEB_VERSION) -> Path:
    """Where the gitleaks .deb is unpacked; downloaded and unpacked on first use."""
    target = CACHE / f"gitleaks-{version}"
    done = target / ".installed"
    if done.exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    deb = _download_deb(version)
    _say(f"dpkg-deb -x {deb.name} {target}")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(target)], check=True)
    sha = subprocess.run(["sha256sum", str(deb)], capture_output=True, text=True,
                         check=True).stdout.split()[0]
    done.write_text(json.dumps({"deb": deb.name, "sha256": sha, "suite": "sid"}) + "\n")
    return target


def gitleaks_bin(version: str = GITLEAKS_DEB_VERSION) -> Path:
    return gitleaks_dir(version) / "usr" / "bin" / "gitleaks"


def versions() -> dict[str, str]:
    """Exact versions of the installed peers (installing them if needed)."""
    ds = subprocess.run([str(detect_secrets_bin()), "--version"], capture_output=True,
                        text=True, check=True).stdout.strip()
    deb = json.loads((gitleaks_dir() / ".installed").read_text())
    # Debian's build does not stamp the version into the binary (`gitleaks version` prints
    # "version is set by build process"), so the package version is the record.
    return {"detect-secrets": ds,
            "gitleaks": f"{GITLEAKS_DEB_VERSION.split('-')[0]} (Debian sid package "
                        f"{GITLEAKS_DEB_VERSION}, {deb['deb']} sha256 {deb['sha256'][:16]}…)"}


def main() -> None:
    had = {"detect-secrets": (CACHE / f"detect-secrets-{DETECT_SECRETS_VERSION}" /
                              ".installed").exists(),
           "gitleaks": (CACHE / f"gitleaks-{GITLEAKS_DEB_VERSION}" / ".installed").exists()}
    found = versions()
    for name, version in found.items():
        state = "already installed" if had[name] else "installed"
        path = detect_secrets_bin() if name == "detect-secrets" else gitleaks_bin()
        print(f"{name}: {version}: {state} at {path}")


if __name__ == "__main__":
    main()
