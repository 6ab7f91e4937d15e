"""The Gradio layout: the components of each tab, collected in one `Components` namespace the handlers key their
outputs by. Element ids (gcxr-*) are what the browser tests and screenshots find."""
from __future__ import annotations

import os
from types import SimpleNamespace

import gradio as gr

from model import taxonomy
from review.identity import UNVERIFIED_NOTE
from review.service import ReviewService
from review.types import DISCLAIMER, REASON_CODES
from ui.screen import DEFAULT_SUPERCLASSES, model_card_html, model_card_text
from viewer.worklist import HEADERS, ORDERS, status_counts, worklist_table

CSS = """
.gcxr-report ol { padding-left: 1.4em; margin-top: 0.2em; }
.gcxr-report h4 { margin: 0 0 0.2em 0; }
.gcxr-report li.gcxr-sentence:hover { outline: 1px dashed #8c959f; }
.gcxr-disclaimer { color: #9a6700; }
#gcxr-status, #gcxr-action-msg { min-height: 1.5em; }
#gcxr-report > .gcxr-report, #gcxr-report .gcxr-report { max-height: 390px; overflow-y: auto; }
/* The sentence radio stays in the page for the report's click-to-select and the keyboard; the report is what
   the reader clicks. */
#gcxr-sentence { position: absolute !important; left: -10000px; width: 1px; height: 1px; overflow: hidden; }
.gcxr-title { font-size: 1.3em; font-weight: 700; }
#gcxr-title, #gcxr-unverified { font-size: 0.9em; }
#gcxr-header { min-height: 0; }
#gcxr-keys { font-size: 0.85em; color: #57606a; }
"""
# Keys the page answers (ui/review.js); listed on the Review tab.
SHORTCUTS = (("j / ↓", "next sentence"), ("k / ↑", "previous sentence"), ("a", "accept"), ("f", "flag"),
             ("e", "edit (Ctrl+Enter saves, Esc leaves)"), ("u", "undo"), ("s", "sign"),
             ("Shift+S", "sign with the unreviewed count shown"), ("n", "next case"))


class Components(SimpleNamespace):
    """Every component a handler reads or writes, by name."""


def build_layout(service: ReviewService, title: str, login: bool = False) -> Components:
    """Lay out the page inside the current gr.Blocks. Without `login` the page says that names are not verified."""
    # gr.Blocks overwrites this with "True" when analytics are off; keep the project's value (model/__init__.py)
    # so that processes started from here see one consistent offline environment.
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    c = Components(case_id=gr.State(None), box=gr.State((0.0, 0.0, 1.0, 1.0)), center=gr.State(None),
                   confirm_n=gr.State(None))
    with gr.Row(elem_id="gcxr-header", equal_height=True):
        gr.Markdown(f"<span class='gcxr-title'>{title}</span> — <span class='gcxr-disclaimer'>**{DISCLAIMER}**</span>",
                    elem_id="gcxr-title")
        c.reviewer = gr.Textbox(label="Reviewer", placeholder="your name (recorded on every correction)",
                                elem_id="gcxr-reviewer", scale=1, max_lines=1)
        c.status = gr.HTML("", elem_id="gcxr-status", scale=1)
    if not login:
        gr.Markdown(f"*{UNVERIFIED_NOTE}*", elem_id="gcxr-unverified")
    with gr.Tabs() as c.tabs:
        with gr.Tab("Worklist", id="worklist"):
            _worklist_tab(c, service)
        with gr.Tab("Review", id="review"):
            with gr.Row():
                with gr.Column(scale=5, min_width=420):
                    _image_column(c)
                with gr.Column(scale=3, min_width=280):
                    _evidence_column(c)
                with gr.Column(scale=5, min_width=420):
                    _report_column(c)
            c.compare = gr.HTML(elem_id="gcxr-compare")
        with gr.Tab("Export", id="export"):
            gr.Markdown("Export the signed reviews as a training set (R2Gen `annotation.json`, sentence "
                        "`pairs.jsonl`, `manifest.json`; incremental) and download it as a zip.")
            c.b_export = gr.Button("Export corrections", elem_id="gcxr-export")
            c.export_file = gr.File(label="Download", interactive=False, elem_id="gcxr-export-file")
            gr.Markdown("The open case's signed report as HL7 FHIR R4 (a Bundle with its DiagnosticReport: "
                        "final or amended, the reviewer as performer, the drafting model as a Device; flagged "
                        "sentences left out). The export above holds every signed case's in `fhir.ndjson`.",
                        elem_id="gcxr-signed-report-downloads")
            c.b_fhir = gr.Button("Download the signed report (FHIR R4)", elem_id="gcxr-fhir")
            c.fhir_file = gr.File(label="FHIR R4 Bundle", interactive=False, elem_id="gcxr-fhir-file")
        with gr.Tab("Model", id="model"):
            _model_tab(c, service)
    return c


def _worklist_tab(c: Components, service: ReviewService) -> None:
    with gr.Row():
        c.order = gr.Radio(list(ORDERS), value="most ungrounded first", label="Order (default: to do first — "
                           "unsigned before signed; films the model cannot read, then the most ungrounded)",
                           elem_id="gcxr-order")
        c.refresh = gr.Button("Refresh", scale=0)
    # Callables: Gradio evaluates them for every page load, so a page never shows (and a click never picks a row
    # of) the worklist as it was when the app started.
    c.counts = gr.Markdown(lambda: status_counts(service.store.worklist()), elem_id="gcxr-counts")
    c.table = gr.Dataframe(headers=HEADERS, value=lambda: worklist_table(service.store.worklist()),
                           interactive=False, type="array", elem_id="gcxr-worklist")
    with gr.Row():
        c.pick = gr.Dropdown(choices=sorted(service.cases), value=None, label="Case", elem_id="gcxr-case",
                             allow_custom_value=False)
        c.open_btn = gr.Button("Open case", variant="primary", elem_id="gcxr-open")
        c.next_todo = gr.Button("Open the next case to do (n)", elem_id="gcxr-next-todo")
    c.upload = gr.File(label="Upload a radiograph (PNG, JPEG or DICOM, at most 100 MB; only pixels are kept)",
                       file_types=[".png", ".jpg", ".jpeg", ".dcm"], type="filepath", elem_id="gcxr-upload")
    c.worklist_msg = gr.HTML("", elem_id="gcxr-worklist-msg")  # an upload's or an open's refusal, beside it


def _image_column(c: Components) -> None:
    c.overlay = gr.Image(label="Radiograph with anatomy outlines", format="png", type="numpy", interactive=False,
                         elem_id="gcxr-overlay", height=540, buttons=["fullscreen", "download"])
    with gr.Row():
        c.opacity = gr.Slider(0.0, 1.0, value=0.35, step=0.05, label="Overlay opacity (0 hides all)",
                              elem_id="gcxr-opacity", min_width=120)
        c.zoom = gr.Slider(1.0, 8.0, value=1.0, step=0.5, label="Zoom (click the image to pan)",
                           elem_id="gcxr-zoom", min_width=120)
        c.level = gr.Slider(0.0, 1.0, value=0.5, step=0.01, label="Window level", elem_id="gcxr-level",
                            min_width=100)
        c.width = gr.Slider(0.02, 1.0, value=1.0, step=0.01, label="Window width", elem_id="gcxr-width",
                            min_width=100)
    with gr.Row():
        c.invert = gr.Checkbox(False, label="Invert", elem_id="gcxr-invert", min_width=80)
        c.reset_view = gr.Button("Reset view", elem_id="gcxr-reset-view", size="sm", scale=0)
    with gr.Accordion("Overlays", open=False):
        c.supers = gr.CheckboxGroup(list(taxonomy.SUPERCLASS_NAMES), value=list(DEFAULT_SUPERCLASSES),
                                    label="By superclass", elem_id="gcxr-supers")
        c.classes = gr.CheckboxGroup([], value=[], label="By class (those the segmenter drew on this film)",
                                     elem_id="gcxr-classes")
    c.legend = gr.HTML(elem_id="gcxr-legend")


def _evidence_column(c: Components) -> None:
    c.heatmap = gr.Image(label="Evidence map of the selected sentence", format="png", type="numpy",
                         interactive=False, elem_id="gcxr-heatmap", height=300)
    c.heat_note = gr.Markdown(elem_id="gcxr-heat-note")
    c.region = gr.Dropdown([], value=None, label="Select a region (shows sentences grounded in it)",
                           elem_id="gcxr-region")
    c.in_region = gr.HTML(elem_id="gcxr-in-region")


def _report_column(c: Components) -> None:
    c.report = gr.HTML(elem_id="gcxr-report")
    c.sentence = gr.Radio([], label="Select a sentence", elem_id="gcxr-sentence")
    with gr.Group():
        c.text = gr.Textbox(label="Sentence text (edit / add)", elem_id="gcxr-text", lines=1, max_lines=3)
        with gr.Row():
            c.reason = gr.Dropdown(list(REASON_CODES), value=REASON_CODES[0], label="Reason (flag)",
                                   elem_id="gcxr-reason", min_width=140)
            c.relink = gr.Dropdown([], value=[], multiselect=True, label="Re-link to regions", elem_id="gcxr-relink",
                                   min_width=160)
    c.actions = {}  # action kind -> its button
    with gr.Row():
        for kind, label, eid in (("accept", "Accept (a)", "gcxr-accept"), ("edit", "Save edit (e)", "gcxr-edit"),
                                 ("flag", "Flag (f)", "gcxr-flag"), ("delete", "Delete", "gcxr-delete"),
                                 ("add", "Add finding", "gcxr-add"), ("relink", "Re-link", "gcxr-relink-btn")):
            c.actions[kind] = gr.Button(label, elem_id=eid, size="sm", min_width=60)
    with gr.Row():
        for kind, label, eid in (("accept_all", "Accept all grounded", "gcxr-accept-all"),
                                 ("undo", "Undo (u)", "gcxr-undo"), ("sign", "Sign report (s)", "gcxr-sign"),
                                 ("amend", "Amend signed", "gcxr-amend")):
            c.actions[kind] = gr.Button(label, elem_id=eid, size="sm", min_width=60,
                                        variant="primary" if kind == "sign" else "secondary")
        c.next_case = gr.Button("Next case (n)", elem_id="gcxr-next", size="sm", min_width=60)
    c.action_msg = gr.HTML("", elem_id="gcxr-action-msg")
    c.confirm_sign = gr.Button("Sign with unreviewed sentences", elem_id="gcxr-sign-confirm", variant="stop",
                               visible=False, size="sm")
    gr.Markdown("Keys: " + " · ".join(f"**{k}** {what}" for k, what in SHORTCUTS)
                + " · click a sentence in the report to select it", elem_id="gcxr-keys")
    c.override = gr.Checkbox(False, label="Override another reviewer's signature (sign / amend; the sentence "
                             "text box says why, and it is recorded)", elem_id="gcxr-override")


def _model_tab(c: Components, service: ReviewService) -> None:
    with gr.Row():
        c.model_pick = gr.Dropdown(sorted(set(service.models) | {service.analyser.model_version}),
                                   value=service.analyser.model_version, label="Model version", elem_id="gcxr-model")
        c.b_model = gr.Button("Use this model", scale=0)
    # issue 18: a version that failed the promotion gate is used only when this is ticked; c.gate shows why
    c.model_force = gr.Checkbox(False, label="Use it even if it failed the promotion gate", elem_id="gcxr-model-force")
    c.gate = gr.Markdown(elem_id="gcxr-gate")
    c.model_card = gr.HTML(model_card_html(service.analyser), elem_id="gcxr-model-card")
    c.model_card_md = gr.Markdown(model_card_text(service.analyser), elem_id="gcxr-model-card-md")
    gr.Markdown("Fine-tune the model in use on the signed reviews (stage 3 again, with replayed training cases so "
                "it does not forget the rest); the new version appears above.")
    with gr.Row():
        c.b_ft = gr.Button("Fine-tune from corrections", elem_id="gcxr-finetune")
        c.b_ft_cancel = gr.Button("Cancel fine-tune", elem_id="gcxr-finetune-cancel", scale=0)
