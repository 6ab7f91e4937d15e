"""Who people are and how their words are shown: reviewer names, the logged-in identity, terminal-safe text.

Standard library only (no SQLAlchemy), so the review domain and the app may call it without the database layer.

A reviewer name is compared as it is normalised here: NFKC (full-width "ｄｒ．ａ" is "dr.a"), whitespace runs
collapsed, and refused when it holds a character that would make two different people look alike on screen or in
a terminal: control characters (ESC starts terminal escape sequences), invisible format characters (zero-width
space, joiners, soft hyphen, BOM) and bidirectional controls (a right-to-left override shows "dr.a‮b" reversed),
or letters of more than one script ("dr.а" with a Cyrillic "а" next to Latin letters).
"""
from __future__ import annotations

import unicodedata

MAX_NAME = 128  # reviewer, model version, study id


class IdentityError(ValueError):
    """A name or identity the store refuses; the message says why."""


# Bidirectional formatting characters are category Cf too; they are named apart because their harm is specific.
BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SCRIPTS_THAT_LOOK_ALIKE = ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE")


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X} {name}" if name else f"U+{ord(ch):04X}"


def _script(ch: str) -> str | None:
    """The script of a letter, from its Unicode name ("CYRILLIC SMALL LETTER A" -> "CYRILLIC"); None otherwise."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    return unicodedata.name(ch, "").split(" ", 1)[0] or None


def normalise_name(value: object, what: str = "reviewer", one_script: bool = True) -> str:
    """The canonical form of a name, or IdentityError naming the offending character. `one_script=False` for names
    that identify things rather than people (a study id, a source folder), where look-alikes do not sign anything."""
    if value is None or not isinstance(value, str) or not value.strip():
        raise IdentityError(f"{what} is empty")
    name = unicodedata.normalize("NFKC", value).strip()
    for ch in name:
        cat = unicodedata.category(ch)
        if ch in BIDI_CONTROLS:
            raise IdentityError(f"{what} contains a bidirectional control character ({_describe(ch)}), which would "
                             "show the name in another order than it is stored")
        if ch == "\x1b":
            raise IdentityError(f"{what} contains ESC (U+001B), the start of a terminal escape sequence")
        if cat in ("Cc", "Zl", "Zp"):
            raise IdentityError(f"{what} contains a control character ({_describe(ch)})")
        if cat in ("Cf", "Co", "Cn", "Cs"):
            raise IdentityError(f"{what} contains an invisible or unassigned character ({_describe(ch)}), which "
                             "would make two different names look the same")
    name = " ".join(name.split())  # only spaces are left: runs of them (NBSP, ideographic) become one
    if len(name) > MAX_NAME:
        raise IdentityError(f"{what} is {len(name)} characters; the limit is {MAX_NAME}")
    scripts = {s for s in map(_script, name) if s in _SCRIPTS_THAT_LOOK_ALIKE}
    if one_script and len(scripts) > 1:
        raise IdentityError(f"{what} {safe_display(name)!r} mixes letters of {' and '.join(sorted(scripts))}, "
                         "which look alike; use one script")
    return name


def session_reviewer(claimed: object, logged_in: str | None) -> str:
    """The reviewer a request acts as. With login, the logged-in user: `claimed` must be empty or name that user
    (after normalisation), else IdentityError. Without login (the loopback default) the claimed name, normalised;
    it is not verified, and the app says so on screen."""
    if logged_in is None:
        return normalise_name(claimed, "reviewer")
    user = normalise_name(logged_in, "logged-in user")
    if claimed is None or (isinstance(claimed, str) and not claimed.strip()):
        return user
    if normalise_name(claimed, "reviewer") != user:
        raise IdentityError(f"reviewer {safe_display(str(claimed))!r} is not the logged-in user {user!r}: "
                         "corrections are signed with the name you logged in with")
    return user


def safe_display(text: str) -> str:
    """`text` for a terminal or a log line: every control, invisible or bidirectional character shown as a visible
    escape (\\x1b, \\u202e, \\n), so a stored sentence cannot move the cursor, recolour the screen or reorder what
    follows it. Printable text, accents and other scripts pass unchanged."""
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch == "\\":
            out.append("\\\\")  # so that an escape shown here is never mistaken for one typed by the reviewer
        elif cat in ("Cc", "Cf", "Co", "Cn", "Cs", "Zl", "Zp") or ch in BIDI_CONTROLS:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else (f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"))
        else:
            out.append(ch)
    return "".join(out)
