"""What the Review screen shows for one case, as plain values (images, HTML, choices): the review service's case
and state, drawn by viewer/. No Gradio here, so the handlers and the benchmark share it."""
from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import numpy as np

from model import taxonomy
from review.service import ReviewService
from model.types import CaseAnalysis
from review.types import DISCLAIMER, Analyser, ReviewState
from viewer.heatmap import render_heatmap
from viewer.model_card import model_card_html as card_html
from viewer.overlay import legend_html, segmentation_legend_info
from viewer.viewport import Viewport, center_of, render_viewport
from viewer.report import domain_banner, report_html, sentences_in_region, side_by_side_html

DEFAULT_SUPERCLASSES = ("lung halves", "heart region")
DISPLAY_MIN_SIDE = 512


@dataclass
class ViewSettings:
    superclasses: list[str]
    classes: list[str]
    opacity: float
    zoom: float
    center: tuple[float, float] | None = None  # where the reader panned to (fractions); None: the selection
    level: float = 0.5  # window / level on the stored full-depth pixels (viewer/viewport.py)
    width: float = 1.0
    invert: bool = False


DEFAULT_VIEW = ViewSettings(list(DEFAULT_SUPERCLASSES), [], 0.35, 1.0)  # what every case opens with


def case_view(service: ReviewService, case_id: str, sentence: int | None, region: str | None,
              settings: ViewSettings) -> dict[str, Any]:
    """Everything the Review screen shows (render_view) plus the selection it resolved to."""
    image, analysis = service.open(case_id)
    state = service.state(case_id)
    by_index = {s.index: s for s in state.current}
    if sentence not in by_index:  # deleted meanwhile, or none selected
        sentence = None
    v = render_view(image, analysis, state, sentence, region, settings, full=service.full_image(case_id))
    return {**v, "sentence": sentence, "selected": by_index.get(sentence),
            "regions": list(analysis.segmentation.masks), "state": state}


def render_view(image: np.ndarray, analysis: CaseAnalysis, state: ReviewState, sentence: int | None,
                region: str | None, view: ViewSettings, full: np.ndarray | None = None) -> dict[str, Any]:
    """Everything the Review screen shows for one case, as plain values (images, HTML, choices). `full`: the film
    at its stored resolution and depth, which zoom and window / level read (default: the analysis-size image)."""
    masks = analysis.segmentation.masks
    by_index = {s.index: s for s in state.current}
    sel = by_index.get(sentence) if sentence is not None else None
    highlight = [r.name for r in sel.regions if r.name in masks or r.name in taxonomy.SUPERCLASSES] if sel else []
    if region:
        highlight = list(dict.fromkeys(highlight + [region]))
    shown = list(view.superclasses) + list(view.classes)
    center = view.center or (center_of(masks, _expand(highlight, masks)) if view.zoom > 1.0 else None)
    vp = Viewport(view.zoom, center, view.level, view.width, view.invert)
    overlay, box = render_viewport(image if full is None else full, masks, vp, shown, view.opacity, highlight)
    legend_names = [n for n in masks if n in set(_expand(shown, masks)) | set(_expand(highlight, masks))]
    heat = state.heatmaps.get(sentence) if sentence in state.regrounded else \
        (analysis.heatmaps.get(sentence) if sentence is not None and state.marks.get(sentence) != "edited" else None)
    in_region = ""
    if region:
        hits = sentences_in_region(state.current, region)
        in_region = report_html(hits, title=f"Sentences grounded in {region}") if hits else \
            f"<p><em>No sentence is grounded in {html.escape(region)}.</em></p>"
    estimated, source = segmentation_legend_info(analysis.segmentation)
    changes = [(i, *state.changed[i]) for i in sorted(state.changed)
               if state.marks.get(i) in ("edited", "added", "flagged")]
    return {
        "overlay": overlay, "box": box,
        "legend": legend_html(legend_names, highlight, estimated, source),
        "overlay_label": f"Radiograph with anatomy outlines — {source}",
        "classes": produced_classes(analysis),
        "heatmap": _display_size(render_heatmap(image, heat)) if heat is not None else None,
        "heat_note": _heat_note(analysis, state, sel, heat is not None),
        "report": report_html(state.current, selected=sentence, notes=state.notes,
                              title=f"Report for {state.case_id} — {state.status}", disclaimer=DISCLAIMER,
                              banner=domain_banner(analysis.report.domain), flags=state.flags,
                              regrounded=state.regrounded, undecided=set(state.undecided)),
        "compare": side_by_side_html(state.original_text, state.final_text, changes),
        "sentence_choices": [(f"{s.index + 1}. {s.text}", str(s.index)) for s in state.current],
        "in_region": in_region,
    }


def produced_classes(analysis: CaseAnalysis) -> list[str]:
    """The CXAS classes the segmenter drew on this film (a non-empty mask): the only ones worth offering."""
    return sorted(n for n, m in analysis.segmentation.masks.items() if n in taxonomy.CLASS_NAMES and np.any(m))


def _heat_note(analysis: CaseAnalysis, state: ReviewState, sel, has_heat: bool) -> str:
    if sel is None:
        return "Select a sentence to see its evidence map."
    if sel.index in state.regrounded:
        return (f"Evidence map of sentence {sel.index + 1}, re-grounded on the reviewer's words "
                f"({analysis.report.grounding_method or 'grounding'}).")
    if not has_heat:
        return "This sentence has no evidence map yet (the reviewer wrote it and it has not been grounded)."
    return f"Evidence map of sentence {sel.index + 1} ({analysis.report.grounding_method or 'grounding'})."


def _display_size(rgb: np.ndarray, min_side: int = DISPLAY_MIN_SIDE) -> np.ndarray:
    """Small radiographs (phantoms are 256 px) are enlarged by an integer factor, pixel-exact, for the screen."""
    k = -(-min_side // min(rgb.shape[:2]))  # ceil
    return rgb if k <= 1 else np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def _expand(names, masks) -> list[str]:
    out = []
    for n in names:
        out.extend(m for m in taxonomy.SUPERCLASSES.get(n, (n,)) if m in masks)
    return out


def model_card_html(analyser: Analyser) -> str:
    """The model version and its model_card.json as a card (viewer/model_card.py)."""
    return card_html(analyser.model_version, analyser.card or {}, DISCLAIMER)


def model_card_text(analyser: Analyser) -> str:
    """The model directory's own MODEL_CARD.md (gr.Markdown sanitises any HTML in it), empty when there is none."""
    return getattr(analyser, "card_md", "") or ""


def note(text: str, ok: bool) -> str:
    """A confirmation or refusal line; escaped, because it quotes file names, reviewer names and report text."""
    colour, mark = ("#1a7f37", "✔") if ok else ("#cf222e", "⚠")
    return f'<span style="color:{colour}">{mark} {html.escape(text)}</span>'
