"""The report panel: sentences with verdict badges, reasons and linked regions; original beside final.

Every piece of model or user text is HTML-escaped here: a report sentence or a reviewer's edit containing
`<script>` must show as text, never run.
"""
from __future__ import annotations

import difflib
import html
import re
from collections.abc import Collection, Mapping, Sequence

from model.types import VERDICTS, Sentence

BADGE_COLOURS = {"grounded": "#1a7f37", "weak": "#9a6700", "ungrounded": "#cf222e", "unverified": "#6e7781",
                 None: "#57606a"}


def domain_banner(domain: Mapping | None) -> str | None:
    """The plain-words warning for a film outside the report model's domain (None when inside or unknown)."""
    if not domain or domain.get("inside", True):
        return None
    return ("Not a reading of this film. The report model was not trained on films like this one, so nothing it "
            "wrote here is checked against the image: every sentence is marked unverified. "
            f"(domain score {float(domain.get('score', float('nan'))):.1f}, limit "
            f"{float(domain.get('limit', float('nan'))):.1f})")


def verdict_badge(verdict: str | None) -> str:
    if verdict is not None and verdict not in VERDICTS:
        raise ValueError(f"unknown verdict {verdict!r}; expected one of {VERDICTS} or None")
    label = verdict or "not grounded yet"
    return (f'<span class="gcxr-badge gcxr-{html.escape(label.replace(" ", "-"))}" '
            f'style="background:{BADGE_COLOURS[verdict]};color:#fff;border-radius:4px;padding:0 0.4em;'
            f'font-size:0.8em">{html.escape(label)}</span>')


# The grounding engine's numbers, named for a reader who is not a statistician (the words come first anyway).
_NUMBER_NAMES = (("PMI", "association with this film"), ("best region score", "best region score"))


def _reason(text: str) -> str:
    """A reason's first line in words; the numbers after it (its second line) smaller and grey."""
    words, _, numbers = text.partition("\n")
    if not numbers:
        return html.escape(words)
    numbers = " ".join(numbers.split())
    for jargon, plain in _NUMBER_NAMES:
        numbers = re.sub(rf"\b{jargon}\b", plain, numbers)
    return (f'{html.escape(words)} <span class="gcxr-numbers" style="color:#57606a;font-size:0.9em">'
            f'({html.escape(numbers)})</span>')


def _regions(sentence: Sentence, top: int) -> str:
    if not sentence.regions:
        return '<span class="gcxr-regions"><em>no linked region</em></span>'
    items = ", ".join(f"{html.escape(r.name)} ({r.score:.2f})" for r in sentence.regions[:top])
    return f'<span class="gcxr-regions">regions: {items}</span>'


def report_html(sentences: Sequence[Sentence], selected: int | None = None,
                notes: Mapping[int, Sequence[str]] | None = None, title: str = "Report", top_regions: int = 3,
                disclaimer: str | None = None, banner: str | None = None,
                flags: Mapping[int, object] | None = None, regrounded: Collection[int] = (),
                undecided: Collection[int] | None = None) -> str:
    """Sentences as an ordered list: verdict badge, text, reasons, top regions and review notes per sentence.

    selected: the sentence index to mark as selected. notes: sentence index -> short review notes shown under it
    (e.g. "edited by A"). banner: a warning above the report (`domain_banner`); with one, the sentences stay folded
    until the reviewer opens them on purpose. flags: flagged sentence indices (-> reason): struck through and
    labelled, they are not part of the signed report. regrounded: sentences whose verdict was computed again for
    the reviewer's words. undecided: sentences nobody has decided on yet (marked "to review"). Each item carries
    `data-index`; the page selects a sentence when it is clicked (ui/layout.py). Returns an HTML fragment."""
    notes, flags = notes or {}, flags or {}
    parts = [f'<div class="gcxr-report"><h4>{html.escape(title)}</h4>']
    if banner:
        parts.append(f'<div class="gcxr-banner" role="alert" style="background:#fff1e5;border:2px solid #bc4c00;'
                     f'border-radius:6px;padding:0.5em;margin-bottom:0.5em"><b>{html.escape(banner)}</b></div>')
    if disclaimer:
        parts.append(f'<p class="gcxr-disclaimer"><em>{html.escape(disclaimer)}</em></p>')
    if not sentences:
        parts.append("<p><em>No sentences.</em></p></div>")
        return "".join(parts)
    if banner:
        parts.append('<details class="gcxr-reveal"><summary>Show the model\'s text anyway (not a reading of this '
                     'film)</summary>')
    parts.append("<ol>")
    for s in sentences:
        parts.append(_sentence_item(s, s.index == selected, s.index in flags, s.index in regrounded,
                                    undecided is not None and s.index in undecided, top_regions))
        for note in notes.get(s.index, ()):
            parts.append(f'<br/><span class="gcxr-note" style="font-size:0.85em;color:#0969da">'
                         f'{html.escape(note)}</span>')
        parts.append("</li>")
    parts.append("</ol>" + ("</details>" if banner else "") + "</div>")
    return "".join(parts)


def _sentence_item(s: Sentence, selected: bool, flagged: bool, regrounded: bool, undecided: bool,
                   top_regions: int) -> str:
    classes = "gcxr-sentence" + "".join(f" gcxr-{c}" for c, on in (("selected", selected), ("flagged", flagged),
                                                                      ("undecided", undecided)) if on)
    style = ("background:#fff8c5;" if selected else "") + "cursor:pointer;"
    text = html.escape(s.text)
    if flagged:
        text = (f'<s class="gcxr-text" style="color:#6e7781">{text}</s> <span class="gcxr-flag-label" '
                f'style="color:#cf222e;font-size:0.85em">flagged: the image does not support it; not part of the '
                f'signed report</span>')
    else:
        text = f'<span class="gcxr-text">{text}</span>'
    tags = ""
    if regrounded:
        tags += (' <span class="gcxr-regrounded" title="verdict, regions and evidence map computed again for the '
                 'reviewer\'s words" style="color:#0969da;font-size:0.8em;border:1px solid #0969da;border-radius:4px;'
                 'padding:0 0.3em">re-grounded</span>')
    if undecided:
        tags += ' <span class="gcxr-to-review" style="color:#6e7781;font-size:0.8em">· to review</span>'
    out = (f'<li class="{classes}" data-index="{int(s.index)}" style="{style}margin-bottom:0.4em">'
           f'{verdict_badge(s.verdict)}{tags} {text}<br/>{_regions(s, top_regions)}')
    if s.reasons:
        out += (f'<br/><span class="gcxr-reasons" style="font-size:0.85em">why: '
                f'{"; ".join(_reason(r) for r in s.reasons)}</span>')
    return out


def word_diff_html(original: str, final: str) -> str:
    """The final text with the reviewer's changes marked word by word: removed words struck through in red,
    added words underlined in green (difflib over whitespace-separated words; all text escaped)."""
    a, b = original.split(), final.split()
    out = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out.append(html.escape(" ".join(a[i1:i2])))
            continue
        if op in ("delete", "replace"):
            out.append(f'<del class="gcxr-del" style="color:#cf222e">{html.escape(" ".join(a[i1:i2]))}</del>')
        if op in ("insert", "replace"):
            out.append(f'<ins class="gcxr-ins" style="color:#1a7f37">{html.escape(" ".join(b[j1:j2]))}</ins>')
    return " ".join(out)


def side_by_side_html(original: str, final: str, changes: Sequence[tuple[int, str, str]] = ()) -> str:
    """The model's original report beside the reviewer's current (or signed) report, the changes marked word by
    word (`word_diff_html`); `changes`: (sentence index, reviewer, when) of each changed sentence, listed under."""
    def col(title: str, body: str) -> str:
        return (f'<div style="flex:1;min-width:0"><h4>{html.escape(title)}</h4>'
                f'<p style="white-space:pre-wrap">{body}</p></div>')
    final_body = word_diff_html(original, final) if final.strip() else "<em>(empty)</em>"
    who = ""
    if changes:
        items = "".join(f"<li>sentence {int(i) + 1}: {html.escape(by)}, {html.escape(when)}</li>"
                        for i, by, when in changes)
        who = f'<div class="gcxr-changes" style="font-size:0.85em;color:#57606a">Changed by:<ul>{items}</ul></div>'
    return (f'<div class="gcxr-compare"><div style="display:flex;gap:1em">'
            f'{col("Model original", html.escape(original) if original.strip() else "<em>(empty)</em>")}'
            f'{col("Final (after review; flagged sentences left out)", final_body)}</div>{who}</div>')


def sentences_in_region(sentences: Sequence[Sentence], region: str) -> list[Sentence]:
    """Sentences whose linked regions include `region`, best-scoring link first."""
    hits = [(r.score, s) for s in sentences for r in s.regions if r.name == region]
    hits.sort(key=lambda t: -t[0])
    seen: set[int] = set()
    out = []
    for _, s in hits:
        if s.index not in seen:
            seen.add(s.index)
            out.append(s)
    return out
