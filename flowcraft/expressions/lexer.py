"""Source text to tokens, including string escapes, and the error messages that point into it.

A single regular expression recognises both the JavaScript and the Python spellings of each
operator; anything it does not recognise is a typed ExpressionError that names the position,
never a silently accepted literal.
"""

from __future__ import annotations

import re
from typing import Any, NoReturn

from flowcraft.errors import ExpressionError

_SNIPPET = 80

_TOKEN_RE = re.compile(
    r"""
      (?P<ws>\s+)
    | (?P<num>(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
    | (?P<word>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<str>"[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*')
    | (?P<op>===|!==|==|!=|<=|>=|&&|\|\||\?\.|[-+*/%<>!().\[\],])
    """,
    re.VERBOSE | re.DOTALL | re.ASCII,
)
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "0": "\0",
    "\\": "\\", '"': '"', "'": "'", "/": "/", "\n": "",
}
_HEX_RE = re.compile(r"[0-9A-Fa-f]+", re.ASCII)

# (kind, text, position, literal value)
Token = tuple[str, str, int, Any]


def snippet(source: str, position: int) -> str:
    if len(source) <= _SNIPPET:
        return source
    start = max(0, min(position - _SNIPPET // 2, len(source) - _SNIPPET))
    text = source[start:start + _SNIPPET]
    return ("..." if start else "") + text + ("..." if start + _SNIPPET < len(source) else "")


def fail_at(source: str, message: str, position: int) -> NoReturn:
    raise ExpressionError(
        f"{message} at position {position} in expression {snippet(source, position)!r}"
    )


def _unescape(source: str, body: str, start: int) -> str:
    """Decode JS/Python-style backslash escapes; unknown escapes are errors, not literals."""
    if "\\" not in body:
        return body
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        esc = body[i + 1]  # the regex guarantees a character after a backslash
        where = start + i
        if esc in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[esc])
            i += 2
            continue
        if esc == "x":
            digits, i = body[i + 2:i + 4], i + 4
            valid = len(digits) == 2
        elif esc == "u" and body[i + 2:i + 3] == "{":
            close = body.find("}", i + 3)
            if close < 0:
                fail_at(source, "unterminated \\u{...} escape", where)
            digits, i = body[i + 3:close], close + 1
            valid = 1 <= len(digits) <= 6
        elif esc == "u":
            digits, i = body[i + 2:i + 6], i + 6
            valid = len(digits) == 4
        else:
            fail_at(source, f"unknown escape '\\{esc}'", where)
        if not valid or not _HEX_RE.fullmatch(digits) or int(digits, 16) > 0x10FFFF:
            fail_at(source, f"invalid escape '\\{esc}{digits[:8]}'", where)
        code = int(digits, 16)
        out.append(chr(code))
    text = "".join(out)
    # Join UTF-16 surrogate pairs written as two \u escapes, as JavaScript does.
    if any("\ud800" <= c <= "\udfff" for c in text):
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


def tokenize(source: str) -> list[Token]:
    tokens: list[Token] = []
    append = tokens.append
    match = _TOKEN_RE.match
    pos, end = 0, len(source)
    while pos < end:
        m = match(source, pos)
        if m is None:
            ch = source[pos]
            if ch in "\"'":
                fail_at(source, "unterminated string", pos)
            if ch == "=":
                fail_at(source, "unexpected '=' (use '==' to compare)", pos)
            if ch in "&|":
                fail_at(source, f"unexpected '{ch}' (use '{ch * 2}')", pos)
            fail_at(source, f"unexpected character {ch!r}", pos)
        kind = m.lastgroup
        text = m.group()
        if kind == "num":
            try:
                value: Any = (
                    float(text) if "." in text or "e" in text or "E" in text else int(text)
                )
            except ValueError:  # more digits than int() accepts
                fail_at(source, "number literal too long", pos)
            append(("num", text, pos, value))
        elif kind == "str":
            append(("str", text, pos, _unescape(source, text[1:-1], pos + 1)))
        elif kind != "ws":
            append((kind or "op", text, pos, None))
        pos = m.end()
    append(("end", "", end, None))
    return tokens


__all__ = ["Token", "fail_at", "snippet", "tokenize"]
