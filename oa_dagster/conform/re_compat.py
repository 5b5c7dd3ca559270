"""Rewrite a Python `re` pattern so the `regex` package (V0) matches exactly what `re` matches.

`regex` is what lets a match be stopped (see `patterns.py`), but a few of its definitions differ from `re`'s:
`\\w` (it adds combining marks, `re` adds `½`, `²` and other numerics), `\\s` (it lacks the ASCII separators
FS, GS, RS and US), `\\b`/`\\B` (built on `\\w`), case-insensitive `i`/`I`/`ı`/`İ`, and it gives meaning to
`[[:alpha:]]` and `{e<=1}` (fuzzy matching), which `re` reads as literals. Those pieces are rewritten; the
rest of the syntax means the same in both. Checked over every code point of Python's Unicode database and
over the patterns of the real sources (`tests/test_hardening_conform.py`).

Not covered: the Turkish i cluster under a scoped `(?i:...)`/`(?-i:...)` flag or in a case-insensitive
backreference, and code points newer than Python's Unicode database (the two modules' tables differ there).
"""

from __future__ import annotations

import re

import regex

_WORD = r"\p{L}\p{N}_"  # re's \w: str.isalnum() or "_"
_SPACE = r"\s\x1c-\x1f"  # re's \s: str.isspace()
_W = f"[{_WORD}]"
_ANY = r"[\s\S]"
_OUTSIDE = {
    r"\w": _W,
    r"\W": f"[^{_WORD}]",
    r"\s": f"[{_SPACE}]",
    r"\S": f"[^{_SPACE}]",
    r"\b": f"(?:(?<={_W})(?!{_W})|(?<!{_W})(?={_W}))",
    # re (before 3.14) never matches \B in an empty string: a character must be next to the position
    r"\B": f"(?:(?<={_W})(?={_W})|(?<!{_W})(?!{_W})(?:(?<={_ANY})|(?={_ANY})))",
}
_INSIDE = {r"\w": _WORD, r"\s": _SPACE}
_INSIDE_NEGATED = {r"\W": _WORD, r"\S": _SPACE}
_ASCII_NATIVE = {r"\w", r"\W", r"\b"}  # regex's own agree with re's on ASCII text
_QUANTIFIER = re.compile(r"\{\d*(?:,\d*)?\}")
_FLAGS = re.compile(r"\(\?([aiLmsux-]+)[:)]")
# how a group opens, copied as it is: names and flags are not literals
_GROUP_OPENING = re.compile(r"\(\?(?:P<\w+>|P=\w+\)|[aiLmsux]*(?:-[imsx]+)?[:)]|<=|<!|[=!:>]|\(\w+\))")
# escapes longer than two characters: hex, unicode, named, octal
_LONG_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|N\{[^}]*\}|0[0-7]{0,2}|[0-7]{3})")
_TURKIC_I = "iIıİ"  # the one case cluster where re's case folding differs from regex's
_FOLDING_CHECKS = _TURKIC_I + "\u0345"


def _token_end(pattern: str, i: int) -> int:
    """End of the token at `i`: a character, or a whole escape (`\\x69`, `\\N{name}`, ...)."""
    if pattern[i] != "\\":
        return i + 1
    long = _LONG_ESCAPE.match(pattern, i)
    return long.end() if long else i + 2


def _skip_until(pattern: str, i: int, stop: str) -> int:
    """Index after the first `stop` token from `i` (or the end): how re skips `(?#...)` and verbose comments."""
    while i < len(pattern):
        end = _token_end(pattern, i)
        if pattern[i:end] == stop:
            return end
        i = end
    return i


def _character_set(pattern: str, start: int, ascii_values: bool = False) -> tuple[str, int]:
    """The set opening at `start`, rewritten, and the index after it. As re reads a set, a `]` right after
    `[` or `[^` is a literal, and so is a `[` inside."""
    i = start + 1
    negated = pattern.startswith("^", i)
    i += negated
    items: list[str] = []
    excluded: list[str] = []  # the classes \W and \S leave out: a set cannot hold a complement
    while i < len(pattern):
        end = _token_end(pattern, i)
        token = pattern[i:end]
        i = end
        if token == "]" and (items or excluded):
            break
        if ascii_values and token in _ASCII_NATIVE:
            items.append(token)
        elif token in _INSIDE:
            items.append(_INSIDE[token])
        elif token in _INSIDE_NEGATED:
            excluded.append(_INSIDE_NEGATED[token])
        elif token in ("[", "]"):
            items.append("\\" + token)  # regex reads `[:alpha:]` inside a set as a POSIX class
        else:
            items.append(token)
    body = "".join(items)
    if not excluded:
        return f"[{'^' if negated else ''}{body}]", i
    if body.startswith("^"):
        body = "\\" + body  # no longer right after the `[`: keep it a literal
    if negated:  # in none of the items and in none of the complements: in every class, in no item
        *ahead, last = excluded
        checks = ([f"(?![{body}])"] if body else []) + [f"(?=[{e}])" for e in ahead]
        return f"(?:{''.join(checks)}[{last}])", i
    options = ([f"[{body}]"] if body else []) + [f"[^{e}]" for e in excluded]
    return f"(?:{'|'.join(options)})", i


def _case_sensitive(chars: str) -> str:
    return f"(?-i:[{chars}])"


def _fold_like_re(original: str, translated: str) -> str:
    """A case-insensitive set patched for the characters where regex's case folding differs from re's."""
    want = {c for c in _FOLDING_CHECKS if re.fullmatch(original, c, re.IGNORECASE)}
    have = {c for c in _FOLDING_CHECKS if regex.fullmatch(translated, c, flags=regex.V0 | regex.IGNORECASE)}
    if want == have:
        return translated
    guard = f"(?!{_case_sensitive(''.join(sorted(have - want)))})" if have - want else ""
    extra = f"|{_case_sensitive(''.join(sorted(want - have)))}" if want - have else ""
    return f"(?:{guard}{translated}{extra})"


def _turkic_literal(token: str) -> str | None:
    """For a literal of the i cluster (`i`, `\\x69`, ...), what it matches case-insensitively in re."""
    try:
        if sum(bool(re.fullmatch(token, c)) for c in _TURKIC_I) != 1:  # `.` or `\\D` is no literal
            return None
    except re.error:  # `*`, a group reference, ...
        return None
    return _case_sensitive("".join(c for c in _TURKIC_I if re.fullmatch(token, c, re.IGNORECASE)))


def translate(pattern: str, flags: int = 0, ascii_values: bool = False) -> str:
    """`pattern` (valid for `re`, compiled with `flags`) rewritten for `regex` V0 to match the same strings.

    Under ASCII the two already agree. Under VERBOSE a `#` starts a comment, copied as it is. With
    `ascii_values` the result is exact for ASCII values only, and keeps regex's faster `\\w` and `\\b`; it
    is not meant for case-insensitive patterns (see `compile_for_ascii`).
    """
    inline = "".join(m.group(1) for m in _FLAGS.finditer(pattern))
    if flags & re.ASCII or "a" in inline:
        return pattern
    verbose = bool(flags & re.VERBOSE) or "x" in inline
    folding = bool(flags & re.IGNORECASE) or "i" in inline
    # patch case folding where the whole pattern is case-insensitive (a scoped flag cannot be followed here)
    fold_like_re = bool(flags & re.IGNORECASE) and "-" not in inline
    out: list[str] = []
    i = 0
    while i < len(pattern):
        char = pattern[i]
        opening = _GROUP_OPENING.match(pattern, i) if char == "(" else None
        if opening:
            end = opening.end()
            out.append(opening.group())
        elif pattern.startswith("(?#", i):
            end = _skip_until(pattern, i + 3, ")")
            out.append(pattern[i:end])
        elif char == "#" and verbose:
            end = _skip_until(pattern, i + 1, "\n")
            out.append(pattern[i:end])
        elif char == "\\" and ascii_values and pattern[i : i + 2] in _ASCII_NATIVE:
            end = i + 2
            out.append(pattern[i:end])
        elif char == "\\" and pattern[i : i + 2] in _OUTSIDE:
            end = i + 2
            # outside a set, re never folds the case of \w and friends (U+0345 folds to a Greek letter)
            out.append(f"(?-i:{_OUTSIDE[pattern[i:end]]})" if folding else _OUTSIDE[pattern[i:end]])
        elif char == "[":
            text, end = _character_set(pattern, i, ascii_values)
            out.append(_fold_like_re(pattern[i:end], text) if fold_like_re else text)
        elif char == "{":
            quantifier = _QUANTIFIER.match(pattern, i)
            valid = quantifier is not None and quantifier.group() != "{}"
            end = quantifier.end() if valid else i + 1
            out.append(pattern[i:end] if valid else r"\{")  # regex reads `{e<=1}` as fuzzy matching
        else:
            end = _token_end(pattern, i)
            token = pattern[i:end]
            turkic = _turkic_literal(token) if fold_like_re else None
            out.append(turkic or token)
        i = end
    return "".join(out)


def compile_like_re(source: str, flags: int = 0) -> regex.Pattern:
    """`source` compiled with `regex` to match what `re` matches; raises `re.error` where `re` would."""
    checked = re.compile(source, flags)
    return regex.compile(translate(source, checked.flags), flags=regex.V0 | (checked.flags & ~re.UNICODE))


def compile_for_ascii(source: str, flags: int = 0) -> regex.Pattern | None:
    """A faster twin of `compile_like_re(source)`, exact on ASCII values only (where regex's `\\w` and `\\b`
    agree with re's: translated, they cost twice the matching). None for a case-insensitive pattern: its
    non-ASCII letters (`İ`) may match ASCII ones (`i`) differently."""
    checked = re.compile(source, flags)
    inline = "".join(m.group(1) for m in _FLAGS.finditer(source))
    if checked.flags & re.IGNORECASE or "i" in inline:
        return None
    return regex.compile(
        translate(source, checked.flags, ascii_values=True), flags=regex.V0 | (checked.flags & ~re.UNICODE)
    )
