"""The report panel: sentences with verdict badges, reasons and linked regions; original beside final.

Every piece of model or user text is HTML-escaped here: a report sentence or a reviewer's edit containing
`<script>` must show as text, never run.
"""
from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

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


def _reason(text: str) -> str:
    """A reason's first line in words; the numbers after it (its second line) smaller and grey."""
    words, _, numbers = text.partition("\n")
    if not numbers:
        return html.escape(words)
    return (f'{html.escape(words)} <span class="gcxr-numbers" style="color:#57606a;font-size:0.9em">'
            f'({html.escape(" ".join(numbers.split()))})</span>')


def _regions(sentence: Sentence, top: int) -> str:
    if not sentence.regions:
        return '<span class="gcxr-regions"><em>no linked region</em></span>'
    items = ", ".join(f"{html.escape(r.name)} ({r.score:.2f})" for r in sentence.regions[:top])
    return f'<span class="gcxr-regions">regions: {items}</span>'


def report_html(sentences: Sequence[Sentence], selected: int | None = None,
                notes: Mapping[int, Sequence[str]] | None = None, title: str = "Report", top_regions: int = 3,
                disclaimer: str | None = None, banner: str | None = None) -> str:
    """Sentences as an ordered list: verdict badge, text, reasons, top regions and review notes per sentence.

    selected: the sentence index to mark as selected. notes: sentence index -> short review notes shown under it
    (e.g. "edited by A"). banner: a warning above the report (`domain_banner`); with one, the sentences stay folded
    until the reviewer opens them on purpose. Returns an HTML fragment."""
    notes = notes or {}
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
        sel = s.index == selected
        style = "background:#fff8c5;" if sel else ""
        parts.append(f'<li class="gcxr-sentence{" gcxr-selected" if sel else ""}" data-index="{int(s.index)}" '
                     f'style="{style}margin-bottom:0.4em">{verdict_badge(s.verdict)} '
                     f'<span class="gcxr-text">{html.escape(s.text)}</span><br/>{_regions(s, top_regions)}')
        if s.reasons:
            parts.append(f'<br/><span class="gcxr-reasons" style="font-size:0.85em">why: '
                         f'{"; ".join(_reason(r) for r in s.reasons)}</span>')
        for note in notes.get(s.index, ()):
            parts.append(f'<br/><span class="gcxr-note" style="font-size:0.85em;color:#0969da">'
                         f'{html.escape(note)}</span>')
        parts.append("</li>")
    parts.append("</ol>" + ("</details>" if banner else "") + "</div>")
    return "".join(parts)


def side_by_side_html(original: str, final: str) -> str:
    """The model's original report beside the reviewer's current (or signed) report."""
    def col(title: str, text: str) -> str:
        body = html.escape(text) if text.strip() else "<em>(empty)</em>"
        return (f'<div style="flex:1;min-width:0"><h4>{html.escape(title)}</h4>'
                f'<p style="white-space:pre-wrap">{body}</p></div>')
    return (f'<div class="gcxr-compare" style="display:flex;gap:1em">{col("Model original", original)}'
            f'{col("Final (after review)", final)}</div>')


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
