"""Sentence splitting for radiology reports, with character offsets into the original text.

Handles section headers ("FINDINGS:", "Impression:"), numbered lists ("1. ...", "2) ..."), abbreviations
("e.g.", "Dr.", "vs."), decimals ("1.5 cm"), tokenised model output ("the lungs are clear . no effusion .") and
the IU de-identification token XXXX (kept verbatim: it is part of the text, never a boundary by itself).
"""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    start: int  # character offset of the first character, inclusive
    end: int  # exclusive; text == report[start:end]
    text: str


_KNOWN_HEADERS = (r"findings|impression|impressions|comparison|comparisons|indication|indications|history|"
                  r"clinical history|technique|exam|examination|conclusion|conclusions|recommendation|"
                  r"recommendations|procedure|reason for exam|reason for examination|clinical information|"
                  r"wet read|final report|addendum|notification|opinion")
# A header sits at the start of the text, of a line, or after a sentence end; it is a known section name (any
# case) or an all-capitals phrase, followed by a colon. "XXXX:" is a de-identified word, not a header.
_HEADER = re.compile(r"(?:^|(?<=\n)|(?<=[.!?]\s))[ \t]*(?:(?i:" + _KNOWN_HEADERS + r")|(?!XXXX:)[A-Z][A-Z /&-]*[A-Z])"
                     r"[ \t]*:", re.MULTILINE)
# A list marker "1." / "2)" in the same positions.
# "1.Lucency" (no space) is a marker too; "1.5 cm" is not (a digit follows).
_LIST_MARKER = re.compile(r"(?:^|(?<=\n)|(?<=[.!?:]\s)|(?<=[.!?:]))[ \t]*\(?\d{1,2}[.)](?=\s|[A-Z])", re.MULTILINE)
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
_NEWLINE_BEFORE_CAPITAL = re.compile(r"\n(?=[ \t]*[A-Z])")

# A period after these never ends a sentence.
_ABBREVIATIONS = {"dr", "mr", "mrs", "ms", "prof", "st", "vs", "e.g", "i.e", "eg", "ie", "approx", "fig", "cf",
                  "resp", "incl", "hx"}
# A period after these ends a sentence only when the next word does not start in lower case ("5 cm. No effusion"
# ends, "5 cm. in diameter" does not).
_SOFT_ABBREVIATIONS = {"etc", "a.m", "p.m", "cm", "mm", "no"}
_WORD_BEFORE = re.compile(r"([A-Za-z](?:[A-Za-z.]*[A-Za-z])?)$")


def _is_boundary(text: str, match: re.Match) -> bool:
    if match.group() != ".":  # "?", "!" or "..." always end a sentence
        return True
    before = _WORD_BEFORE.search(text, 0, match.start())
    word = before.group(1).lower() if before and before.end() == match.start() else ""
    if word in _ABBREVIATIONS:
        return False
    if word in _SOFT_ABBREVIATIONS:
        nxt = re.match(r"\s*(\S)", text[match.end():])
        return not (nxt and nxt.group(1).islower())
    return True


def _cuts(text: str) -> list[tuple[int, int]]:
    """Character ranges that separate sentences and belong to none: headers, list markers, boundaries."""
    cuts = [(m.start(), m.end()) for m in _HEADER.finditer(text)]
    cuts += [(m.start(), m.end()) for m in _LIST_MARKER.finditer(text)]
    cuts += [(m.end(), m.end()) for m in _SENTENCE_END.finditer(text) if _is_boundary(text, m)]
    cuts += [(m.start(), m.end()) for m in _BLANK_LINE.finditer(text)]
    cuts += [(m.start(), m.start() + 1) for m in _NEWLINE_BEFORE_CAPITAL.finditer(text)]
    return sorted(cuts)


def section_headers(text: str) -> list[Span]:
    """The section headers of a report ("FINDINGS", "Impression"), without their colons, in order."""
    out = []
    for m in _HEADER.finditer(text):
        name = m.group().strip().rstrip(":").strip()
        start = m.start() + m.group().index(name)
        out.append(Span(start, start + len(name), name))
    return out


def split_sentences(text: str) -> list[Span]:
    """Sentences of a report as spans; `span.text == text[span.start:span.end]`, trimmed of whitespace.

    Headers and list numbers are left out of every span; spans holding no letter or digit are dropped.
    """
    if not isinstance(text, str):
        raise TypeError(f"split_sentences expects a str, got {type(text).__name__}")
    spans: list[Span] = []
    pos = 0
    for cut_start, cut_end in _cuts(text) + [(len(text), len(text))]:
        if cut_start > pos:
            _append(spans, text, pos, cut_start)
        pos = max(pos, cut_end)
    return spans


def _append(spans: list[Span], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    piece = text[start:end]
    if any(c.isalnum() for c in piece):
        spans.append(Span(start, end, piece))
