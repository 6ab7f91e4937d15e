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
from ui.screen import DEFAULT_SUPERCLASSES, model_md
from viewer.worklist import HEADERS, ORDERS, worklist_table

CSS = """
.gcxr-report ol { padding-left: 1.4em; }
.gcxr-disclaimer { color: #9a6700; }
#gcxr-status { min-height: 1.5em; }
"""


class Components(SimpleNamespace):
    """Every component a handler reads or writes, by name."""


def build_layout(service: ReviewService, title: str, login: bool = False) -> Components:
    """Lay out the page inside the current gr.Blocks. Without `login` the page says that names are not verified."""
    # gr.Blocks overwrites this with "True" when analytics are off; keep the project's value (model/__init__.py)
    # so that processes started from here see one consistent offline environment.
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    gr.Markdown(f"# {title}\n**{DISCLAIMER}**")
    c = Components(case_id=gr.State(None))
    with gr.Row():
        c.reviewer = gr.Textbox(label="Reviewer", placeholder="your name (recorded on every correction)",
                                elem_id="gcxr-reviewer", scale=1)
        c.status = gr.HTML("", elem_id="gcxr-status")
    if not login:
        gr.Markdown(f"*{UNVERIFIED_NOTE}*", elem_id="gcxr-unverified")
    with gr.Tabs() as c.tabs:
        with gr.Tab("Worklist", id="worklist"):
            _worklist_tab(c, service)
        with gr.Tab("Review", id="review"):
            with gr.Row():
                with gr.Column(scale=3):
                    _image_column(c)
                with gr.Column(scale=3):
                    _report_column(c)
        with gr.Tab("Export", id="export"):
            gr.Markdown("Export the signed reviews as a training set (R2Gen `annotation.json`, sentence "
                        "`pairs.jsonl`, `manifest.json`; incremental) and download it as a zip.")
            c.b_export = gr.Button("Export corrections", elem_id="gcxr-export")
            c.export_file = gr.File(label="Download", interactive=False, elem_id="gcxr-export-file")
        with gr.Tab("Model", id="model"):
            _model_tab(c, service)
    return c


def _worklist_tab(c: Components, service: ReviewService) -> None:
    with gr.Row():
        c.order = gr.Radio(list(ORDERS), value="most ungrounded first", label="Order", elem_id="gcxr-order")
        c.refresh = gr.Button("Refresh", scale=0)
    c.table = gr.Dataframe(headers=HEADERS, value=worklist_table(service.store.worklist()), interactive=False,
                           type="array", elem_id="gcxr-worklist")
    with gr.Row():
        c.pick = gr.Dropdown(choices=sorted(service.cases), value=None, label="Case", elem_id="gcxr-case",
                             allow_custom_value=False)
        c.open_btn = gr.Button("Open case", variant="primary", elem_id="gcxr-open")
    c.upload = gr.File(label="Upload a radiograph (PNG, JPEG or DICOM, at most 100 MB; only pixels are kept)",
                       file_types=[".png", ".jpg", ".jpeg", ".dcm"], type="filepath", elem_id="gcxr-upload")


def _image_column(c: Components) -> None:
    c.overlay = gr.Image(label="Radiograph with CXAS overlays", format="png", type="numpy", interactive=False,
                         elem_id="gcxr-overlay", height=520, buttons=["fullscreen", "download"])
    with gr.Row():
        c.opacity = gr.Slider(0.0, 1.0, value=0.35, step=0.05, label="Overlay opacity")
        c.zoom = gr.Slider(1.0, 4.0, value=1.0, step=0.5, label="Zoom (centred on selection)")
    c.supers = gr.CheckboxGroup(list(taxonomy.SUPERCLASS_NAMES), value=list(DEFAULT_SUPERCLASSES),
                                label="Overlays by superclass", elem_id="gcxr-supers")
    with gr.Accordion("Overlays by class", open=False):
        c.classes = gr.CheckboxGroup(sorted(taxonomy.CLASS_NAMES), value=[], label="Classes")
    c.legend = gr.HTML(elem_id="gcxr-legend")
    c.heat_note = gr.Markdown()
    c.heatmap = gr.Image(label="Evidence map of the selected sentence", format="png", type="numpy",
                         interactive=False, elem_id="gcxr-heatmap", height=380)


def _report_column(c: Components) -> None:
    c.report = gr.HTML(elem_id="gcxr-report")
    c.sentence = gr.Radio([], label="Select a sentence", elem_id="gcxr-sentence")
    c.region = gr.Dropdown([], value=None, label="Select a region (shows sentences grounded in it)",
                           elem_id="gcxr-region")
    c.in_region = gr.HTML(elem_id="gcxr-in-region")
    with gr.Group():
        c.text = gr.Textbox(label="Sentence text (edit / add)", elem_id="gcxr-text")
        c.reason = gr.Dropdown(list(REASON_CODES), value=REASON_CODES[0], label="Reason code (flag ungrounded)",
                               elem_id="gcxr-reason")
        c.relink = gr.Dropdown([], value=[], multiselect=True, label="Re-link to regions", elem_id="gcxr-relink")
        c.actions = {}  # action kind -> its button
        with gr.Row():
            for kind, label, eid in (("edit", "Save edit", "gcxr-edit"), ("delete", "Delete", "gcxr-delete"),
                                     ("add", "Add finding", "gcxr-add"), ("flag", "Flag ungrounded", "gcxr-flag")):
                c.actions[kind] = gr.Button(label, elem_id=eid)
        with gr.Row():
            for kind, label, eid in (("relink", "Re-link", "gcxr-relink-btn"), ("accept", "Accept", "gcxr-accept"),
                                     ("undo", "Undo last", "gcxr-undo"), ("sign", "Sign report", "gcxr-sign"),
                                     ("amend", "Amend signed", "gcxr-amend")):
                c.actions[kind] = gr.Button(label, elem_id=eid, variant="primary" if kind == "sign" else "secondary")
        c.override = gr.Checkbox(False, label="Override another reviewer's signature (sign / amend; the sentence "
                                 "text box says why, and it is recorded)", elem_id="gcxr-override")
    c.compare = gr.HTML(elem_id="gcxr-compare")


def _model_tab(c: Components, service: ReviewService) -> None:
    with gr.Row():
        c.model_pick = gr.Dropdown(sorted(set(service.models) | {service.analyser.model_version}),
                                   value=service.analyser.model_version, label="Model version", elem_id="gcxr-model")
        c.b_model = gr.Button("Use this model", scale=0)
    # issue 18: a version that failed the promotion gate is used only when this is ticked; c.gate shows why
    c.model_force = gr.Checkbox(False, label="Use it even if it failed the promotion gate", elem_id="gcxr-model-force")
    c.gate = gr.Markdown(elem_id="gcxr-gate")
    c.model_card = gr.Markdown(model_md(service.analyser), elem_id="gcxr-model-card")
    gr.Markdown("Fine-tune the model in use on the signed reviews (stage 3 again, with replayed training cases so "
                "it does not forget the rest); the new version appears above.")
    with gr.Row():
        c.b_ft = gr.Button("Fine-tune from corrections", elem_id="gcxr-finetune")
        c.b_ft_cancel = gr.Button("Cancel fine-tune", elem_id="gcxr-finetune-cancel", scale=0)
