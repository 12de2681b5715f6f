"""A deterministic, source-like tree of files for timing `keystead scan` (issue 16, item 6).

    python -m bench.scan_tree /tmp/scan-tree                 # 100,000 files, about 300 MB
    python -m bench.scan_tree /tmp/scan-tree --files 10000 --kb 3
    time keystead scan /tmp/scan-tree > /dev/null

The files look like a large monorepo: Python, TypeScript, Go, YAML, JSON, Markdown, CSV and
log files built from code-like lines, with the things that slow a scanner or trip it (hex
digests, UUIDs, base64 blobs, long minified lines, `key`/`token` words, provider names) and
one synthetic key every `--plant-every` files so the scan has findings to report. The same
arguments give the same bytes on every run (a seeded generator), so before/after timings
compare like with like. The planted keys are random strings in the providers' formats:
never real, and written only into the generated tree.
"""

from __future__ import annotations

import argparse
import random
import string
import sys
import time
from pathlib import Path

B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase
HEX = "0123456789abcdef"
WORDS = ("user", "account", "request", "response", "client", "config", "value", "handler",
         "result", "items", "index", "buffer", "stream", "model", "prompt", "tokens", "budget",
         "limit", "retry", "timeout", "session", "cache", "router", "provider", "upstream",
         "metrics", "span", "trace", "ledger", "invoice", "tenant", "team", "policy", "key_id",
         "api_key", "secret_name", "token_count", "auth_header", "password_hash", "openai")
# Provider names are in about one file in six of a real tree (in site-packages, 15% of files
# mention azure, aws, together, cohere or mistral; 1% hold a key prefix such as sk- or hf_).
MENTIONS = ("azure_region", "aws_region", "mistral_model", "cohere_rerank",
            "together with", "deepseek_chat", "sk-learn", "hf_hub_download")
EXT = (".py", ".py", ".py", ".ts", ".ts", ".js", ".go", ".yaml", ".json", ".md", ".csv", ".log",
       ".txt", ".toml")


def _ident(rng: random.Random) -> str:
    return "_".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))


def _line(rng: random.Random) -> str:
    kind = rng.random()
    a, b = _ident(rng), _ident(rng)
    if kind < 0.35:
        return f"    {a} = {b}({_ident(rng)}, {rng.randint(0, 9999)})"
    if kind < 0.5:
        return f"    # {' '.join(rng.choice(WORDS) for _ in range(rng.randint(3, 12)))}"
    if kind < 0.6:
        return f"def {a}(self, {b}: str, timeout: float = {rng.random():.2f}) -> dict:"
    if kind < 0.68:
        return f'    "{a}": "{"".join(rng.choices(HEX, k=rng.choice((32, 40, 64))))}",'
    if kind < 0.74:
        u = "".join(rng.choices(HEX, k=32))
        return f"    {a}_id = \"{u[:8]}-{u[8:12]}-{u[12:16]}-{u[16:20]}-{u[20:]}\""
    if kind < 0.78:
        return f"    {a}: \"{''.join(rng.choices(B62 + '+/', k=rng.randint(40, 200)))}=\""
    if kind < 0.80:  # a minified bundle's line
        return ";".join(f"var {_ident(rng)}={rng.randint(0, 99)}" for _ in range(60))
    if kind < 0.8025:
        return f"    {a} = {rng.choice(MENTIONS)}({b})  # {rng.choice(MENTIONS)}"
    if kind < 0.9:
        return f"    if {a} is None or len({b}) > {rng.randint(1, 512)}:"
    return f"        return await self.{a}.{b}(request, **kwargs)"


def _planted(rng: random.Random) -> str:
    choice = rng.randrange(4)
    if choice == 0:
        return 'OPENAI_API_KEY = "sk-proj-' + "".join(rng.choices(B62, k=48)) + '"'
    if choice == 1:
        return "ANTHROPIC_API_KEY=sk-ant-api03-" + "".join(rng.choices(B62, k=93)) + "AA"
    if choice == 2:
        return 'GROQ_API_KEY: "gsk_' + "".join(rng.choices(B62, k=52)) + '"'
    return 'MISTRAL_API_KEY="' + "".join(rng.choices(B62, k=32)) + '"'


def generate(root: Path, files: int, kb: float, seed: int, plant_every: int) -> tuple[int, int]:
    """Writes the tree; returns (bytes written, keys planted)."""
    rng = random.Random(seed)
    # A pool of lines, sliced into files: realistic enough, and fast to write 100k files.
    pool = [_line(rng) for _ in range(200_000)]
    total = planted = 0
    for n in range(files):
        directory = root / f"pkg{n % 97:02d}" / f"mod{(n // 97) % 103:03d}"
        if n < 97 * 103:
            directory.mkdir(parents=True, exist_ok=True)
        size = max(200, int(rng.lognormvariate(0, 0.9) * kb * 1024 * 0.67))
        start = rng.randrange(len(pool))
        out: list[str] = []
        written = 0
        i = start
        while written < size:
            line = pool[i % len(pool)]
            out.append(line)
            written += len(line) + 1
            i += 1
        if plant_every and n % plant_every == plant_every // 2:
            out.insert(rng.randrange(len(out)), _planted(rng))
            planted += 1
        data = ("\n".join(out) + "\n").encode()
        (directory / f"file{n:06d}{EXT[n % len(EXT)]}").write_bytes(data)
        total += len(data)
    return total, planted


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--kb", type=float, default=3.0, help="mean file size in KiB")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--plant-every", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.root.exists() and any(args.root.iterdir()):
        sys.exit(f"{args.root} is not empty: give a new directory")
    started = time.monotonic()
    total, planted = generate(args.root, args.files, args.kb, args.seed, args.plant_every)
    print(f"{args.files} files, {total / 1e6:.1f} MB, {planted} planted keys in {args.root} "
          f"({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
