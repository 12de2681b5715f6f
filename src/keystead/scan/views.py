"""Other readings of a text, line for line, in which keys that hide become plain.

Each view is a list with one entry per line of the text: the line rewritten, or "" where the
view has nothing to add. The scanner runs the detectors on each view too, and reports what a
view finds at the original line (a key joined from pieces is reported at the line where it
starts).

- `structure`: each `key: value` line of YAML, JSON (pretty-printed), TOML, INI or Python/JS
  literals is prefixed with the path of keys above it (`cohere:` then `apiKey:` two lines down
  reads `cohere.apiKey: ...`; `- name: COHERE_API_KEY` then `value: ...` reads
  `env.COHERE_API_KEY.value: ...`; `[cohere]` then `api_key = ...` reads `cohere.api_key = ...`),
  and each row of a CSV or TSV file is written `column=cell; ...` with the header's names.
- `unescaped`: JSON and string escapes (`\\"`, `\\/`, `\\n`, `\\u002f`) and percent-encoding of
  the characters keys and URLs use (`%2F`, `%2B`, `%3D`, `%3A`, `%40`) decoded.
- `wrapped`: a long line ending in a token, followed by the first token of the next line (after
  its `>` quoting or comment mark): a key a mail client, a terminal or an editor wrapped at its
  width, with no continuation mark.
- `joined`: backslash-newline continuations removed and string pieces joined: `"sk-proj-" +
  "..."`, Python's implicit `("sk-proj-" "...")`, PHP's `.`, Lua's `..`, VB's `&`, SQL's `||`,
  and lists joined with nothing between (`concat!(...)`, `[...].join("")`, `"".join([...])`,
  `strings.Join(..., "")`); literals interpolated into templates (`${"sk-"}`, f-string
  `{'sk-'}`) replaced by their text.
"""

from __future__ import annotations

import bisect
import csv
import re
from collections.abc import Sequence
from typing import Any

import re2

__all__ = ["joined", "structure", "unescaped", "wrapped"]

# --- structure --------------------------------------------------------------------------------

_KEY_LINE = re.compile(
    r"^(?P<indent>[ \t]*)(?P<dash>-[ \t]+)?(?P<q>[\"']?)(?P<key>[\w.@/$-]{1,80})(?P=q)"
    r"[ \t]*(?P<sep>:(?!:)|=>|=(?!=)|:=)[ \t]*(?P<rest>.*)$")
_SECTION = re.compile(r"^\s*\[\[?\s*(?P<name>[\w.\" -]{1,80}?)\s*\]\]?\s*(?:[#;].*)?$")
# Fields whose value names the item they are in: `- name: COHERE_API_KEY`, `"provider": "x"`.
_LABEL_KEYS = frozenset({"name", "provider", "type", "id", "kind", "service", "vendor",
                         "platform", "backend", "key", "env", "model_provider", "api_type"})
_LABEL_VALUE = re.compile(r"^[\"']?(?P<v>[\w.:/-]{1,60})[\"']?,?\s*(?:#.*)?$")
# A Terraform/HCL block: a type, quoted labels (or none: `locals {`) and a brace.
_HCL_BLOCK = re.compile(r'^(?P<indent>[ \t]*)(?P<type>[a-z_][\w-]{0,40})'
                        r'(?P<labels>(?:[ \t]+"[\w.-]{1,60}")*)[ \t]*\{[ \t]*$')
_OPENS = ("", "{", "[", "|", ">", "|-", ">-", "(", "dict(", "{{")
_MAX_PATH, _LABEL_REACH = 6, 8


def _label(key: str, rest: str) -> str | None:
    """The value of a field that names its item (`- name: COHERE_API_KEY`), if it is a name:
    short, not a random token (a key must never become part of a path)."""
    if key.lower() not in _LABEL_KEYS:
        return None
    match = _LABEL_VALUE.match(rest)
    if match is None:
        return None
    value = match.group("v")
    return value if len(value) <= 40 and sum(c.isdigit() for c in value) <= 4 else None


def _yaml_like(lines: Sequence[str]) -> list[str]:
    out: list[str] = []
    # (indent, name, line): keys above the current line; a label sits half a column inside its
    # item and names only the few lines after it (a list item, an object), not a whole block.
    stack: list[tuple[float, str, int]] = []
    section: str = ""
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped[0] in "#;" or stripped.startswith("//"):
            out.append("")
            continue
        sect = _SECTION.match(line)
        if sect is not None:
            section, stack = sect.group("name").replace('"', "").strip(), []
            out.append("")
            continue
        m = _KEY_LINE.match(line)
        if m is None:
            block = _HCL_BLOCK.match(line)
            if block is not None:  # `variable "cohere_key" {`: its labels name what is inside
                indent = len(block.group("indent").expandtabs(2))
                while stack and stack[-1][0] >= indent:
                    stack.pop()
                labels = re.findall(r'"([\w.-]{1,60})"', block.group("labels"))
                stack.append((indent, ".".join([block.group("type"), *labels]), number))
            out.append("")
            continue
        indent = len(m.group("indent").expandtabs(2))
        key, rest = m.group("key"), m.group("rest").rstrip()
        if m.group("dash"):
            key_indent = indent + len(m.group("dash"))
            while stack and stack[-1][0] > indent:
                stack.pop()
        else:
            key_indent = indent
            while stack and stack[-1][0] >= key_indent:
                stack.pop()
        path = [section] if section else []
        path += [name for at, name, where in stack
                 if at == int(at) or number - where <= _LABEL_REACH][-_MAX_PATH:]
        if rest.rstrip(",").strip() in _OPENS:
            stack.append((key_indent, key, number))
            out.append("")
            continue
        out.append(".".join([*path, key]) + m.group("sep") + " " + rest)
        label = _label(key, rest)
        if label is not None:
            while stack and stack[-1][0] == key_indent - 0.5:
                stack.pop()
            stack.append((key_indent - 0.5, label, number))
    return out


_HEADER_CELL = re.compile(r"^[\w .()/-]{1,60}$")
# Numbers, dates, times and amounts say nothing about whose a key is: left out of a row, so a
# wide table does not push the provider's column out of reach of the key's.
_FIGURE = re.compile(r"^\s*[-+$€£]?[\d.,:/ TZ+-]*\d[\d.,:/ TZ+-]*%?\s*$")


def _cell_order(pair: tuple[str, str]) -> tuple[bool, bool]:
    """Short cells first and, among them, those naming the row (provider, service) last: right
    before the long cells a key is in."""
    name, cell = pair
    return len(cell) > 30, name.lower() in _LABEL_KEYS


def _csv(lines: Sequence[str]) -> list[str] | None:
    """Rows as `column=cell; ...` (short cells first, so the provider's name comes before a
    long key), or None if the text does not start with a header row."""
    first = next((i for i, line in enumerate(lines) if line.strip()), None)
    if first is None:
        return None
    head = lines[first]
    delimiter = "\t" if head.count("\t") >= max(1, head.count(",")) else ","
    if head.count(delimiter) < 1:
        return None
    header = next(csv.reader([head], delimiter=delimiter))
    if not all(_HEADER_CELL.match(cell.strip()) for cell in header):
        return None
    out = [""] * len(lines)
    for i in range(first + 1, len(lines)):
        if lines[i].count(delimiter) < 1:
            continue
        try:
            cells = next(csv.reader([lines[i]], delimiter=delimiter))
        except (csv.Error, StopIteration):
            continue
        pairs = [(name.strip(), cell) for name, cell in zip(header, cells, strict=False)
                 if not _FIGURE.match(cell)]
        pairs.sort(key=_cell_order)
        out[i] = "; ".join(f"{name}={cell}" for name, cell in pairs)
    return out


def structure(lines: Sequence[str]) -> list[str]:
    table = _csv(lines)
    if table is not None:
        return table
    return _yaml_like(lines)


# --- unescaped ----------------------------------------------------------------------------------

_ESCAPE = re.compile(r"\\u00(?P<u>[0-9a-fA-F]{2})|\\(?P<c>[/nrt\"'\\])|%(?P<p>2[fFbB]|3[dDaA]|40)")
_SIMPLE = {"n": " ", "r": " ", "t": " ", "/": "/", '"': '"', "'": "'", "\\": "\\"}


def _unescape(match: re.Match[str]) -> str:
    if match.group("u"):
        char = chr(int(match.group("u"), 16))
        return char if char.isprintable() else " "
    if match.group("c"):
        return _SIMPLE[match.group("c")]
    return chr(int(match.group("p"), 16))


def unescaped(lines: Sequence[str]) -> list[str]:
    return [_ESCAPE.sub(_unescape, line) if ("\\" in line or "%" in line) else ""
            for line in lines]


# --- joined ---------------------------------------------------------------------------------------

# A string literal; a backslash-newline inside it continues it on the next line.
_PIECE = (r"(?:[rRbBuUfF]{0,2})(?:\"(?:[^\"\\\n]|\\\r?\n|\\.)*\"|'(?:[^'\\\n]|\\\r?\n|\\.)*'"
          r"|`(?:[^`\\]|\\.)*`)")
_JOINER = r"[ \t]*(?:\\?\r?\n\s*)?(?:\+|\.\.?|&|\|\|)?[ \t]*(?:\\?\r?\n\s*)?"
# RE2 (no backtracking): five times faster than re on source full of strings.
_CONCAT: Any = re2.compile(f"{_PIECE}(?:{_JOINER}{_PIECE})+")  # type: ignore[no-untyped-call]
_ONE_PIECE = re.compile(_PIECE)
_CONTINUATION = re.compile(r"\\\r?\n[ \t]*")
# A closing quote, a joiner (or none) and an opening quote: the cheap test (RE2, one pass) that
# a text may hold two pieces to join, before the full pattern runs.
_MAY_JOIN: Any = re2.compile(  # type: ignore[no-untyped-call]
    r"[\"'`][ \t]*(?:\\?\r?\n\s*)?(?:\+|\.\.?|&|\|\|)?[ \t]*"
    r"(?:\\?\r?\n\s*)?[rRbBuUfF]{0,2}[\"'`]")


# Calls and methods that join a list of pieces with nothing between them: Rust's `concat!`,
# SQL's CONCAT, JS `[...].join("")`, Python `"".join([...])`, Go `strings.Join([]string{...},
# "")`, Java `String.join("", ...)`, PHP `implode('', [...])`. A separator other than "" makes
# something else than one token, so those are left alone.
_LIST = rf"{_PIECE}(?:\s*,\s*{_PIECE})+\s*,?\s*"
_EMPTY = r"(?:\"\"|'')"
_JOIN_CALL: Any = re2.compile(  # type: ignore[no-untyped-call]
    rf"(?i:concat)!?\(\s*(?P<a>{_LIST})\)"
    rf"|\[\s*(?P<b>{_LIST})\]\s*\.join\(\s*{_EMPTY}\s*\)"
    rf"|{_EMPTY}\s*\.join\(\s*[\[(]\s*(?P<c>{_LIST})[\])]\s*\)"
    rf"|strings\.Join\(\s*\[\]string\{{\s*(?P<d>{_LIST})\}}\s*,\s*\"\"\s*\)"
    rf"|(?:String\.join|implode)\(\s*{_EMPTY}\s*,\s*\[?\s*(?P<e>{_LIST})\]?\s*\)")
_LIST_GROUPS = sorted(_JOIN_CALL.groupindex.values())  # by number: re2's start() takes no name
_MAY_JOIN_CALL: Any = re2.compile(r"(?i)concat|\.join\(|strings\.Join|implode")  # type: ignore[no-untyped-call]
# A literal interpolated into a template: JS `${"sk-"}`, Python f-string `{'sk-'}`.
_INTERPOLATED = re.compile(r"\$?\{\s*(?P<q>[\"'])(?P<v>[^\"'\\\n{}]*)(?P=q)\s*\}")


def _contents(piece: str) -> str:
    quote = next(i for i, ch in enumerate(piece) if ch in "\"'`")
    return _CONTINUATION.sub("", piece[quote + 1:-1])


def joined(lines: Sequence[str]) -> list[str] | None:
    """None when nothing in the text is continued or concatenated."""
    out = [""] * len(lines)
    changed = False
    # Logical lines: a line ending in a backslash goes on with the next one.
    i = 0
    while i < len(lines):
        j = i
        while j < len(lines) - 1 and lines[j].rstrip("\r").endswith("\\"):
            j += 1
        if j > i:
            out[i] = _CONTINUATION.sub("", "\n".join(lines[i:j + 1]))
            changed = True
        i = j + 1
    for i, line in enumerate(lines):
        if "{" in line and _INTERPOLATED.search(line):
            out[i] = _INTERPOLATED.sub(lambda m: m.group("v"), out[i] or line)
            changed = True
    text = "\n".join(lines)
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)

    def put(first: int, pieces: Sequence[str]) -> None:
        """The pieces' contents as one string, on the line of the first piece."""
        index = bisect.bisect_right(starts, first) - 1
        head = (out[index] or lines[index])[:first - starts[index]]
        out[index] = head + '"' + "".join(_contents(p) for p in pieces) + '"'

    if _MAY_JOIN_CALL.search(text) is not None:
        for match in _JOIN_CALL.finditer(text):
            group = next(n for n in _LIST_GROUPS if match.group(n) is not None)
            put(match.start(group), _ONE_PIECE.findall(match.group(group)))
            changed = True
    if _MAY_JOIN.search(text) is None:
        return out if changed else None
    for match in _CONCAT.finditer(text):
        pieces = _ONE_PIECE.findall(match.group())
        if len(pieces) < 2:
            continue
        put(match.start(), pieces)
        changed = True
    return out if changed else None


# --- wrapped --------------------------------------------------------------------------------------

# Wrapping happens at a width (72 to 80 columns, a terminal's 80 or more); a short line ending
# in a token was ended there on purpose.
_WRAP_WIDTH = 60
_TAIL_TOKEN = re.compile(r"[A-Za-z0-9_+/=-]{4}$")  # searched in the last 4 characters only
_HEAD_TOKEN = re.compile(r"^\s*(?:>\s*)*(?:#|//|\*|--|;)?\s*(?P<t>[A-Za-z0-9_+/=-]+)")


def wrapped(lines: Sequence[str], whole: frozenset[int]) -> list[str] | None:
    """Each long line ending in a token, with the next line's first token glued on; `whole`:
    the lines that already end in a whole key (glued, it would become a wrong, longer one)."""
    out = [""] * len(lines)
    changed = False
    for i in range(len(lines) - 1):
        line = lines[i].rstrip()
        if (len(line) < _WRAP_WIDTH or i in whole
                or _TAIL_TOKEN.search(line, len(line) - 4) is None):
            continue
        head = _HEAD_TOKEN.match(lines[i + 1])
        if head is not None:
            out[i] = line + head.group("t")
            changed = True
    return out if changed else None
