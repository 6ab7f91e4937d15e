"""GroundCXR review app: `python app.py [--db URL] [--model DIR] [--host H] [--port P] [--threads N]`.

A radiologist opens a chest radiograph from the worklist (or uploads one), sees CXAS anatomy overlays, the
machine-written report with a grounding verdict per sentence and each sentence's attention map, corrects the
report (each correction saved at once) and signs it. Heavy work happens here through model/ and db/; viewer/
only renders the plain objects this module hands it.

Wiring: `Backend` holds the case list, the analyser (model.pipeline) and the review store (db), plus a per-case
analysis cache; `build_app(backend)` lays out the Gradio UI; `main()` wires the real services.
"""
from __future__ import annotations

import model  # noqa: F401  (sets the offline environment before gradio or transformers load)

import argparse
import datetime as _dt
import hashlib
import html
import json
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import gradio as gr
import numpy as np
from PIL import Image

from db.replay import CONTENT_KINDS, REASON_CODES, FinalSentence
from db.store import Store
from model import ASSETS_DIR, PROJECT_ROOT, taxonomy
from model.atomic import atomic_path, atomic_write_json
from model.imageio import read_radiograph
from model.types import RegionScore, ReportOutput, Segmentation, Sentence
from viewer.heatmap import render_heatmap
from viewer.overlay import compose_overlay, legend_html, zoom
from viewer.report import report_html, sentences_in_region, side_by_side_html
from viewer.worklist import HEADERS, ORDERS, WorklistRow, worklist_table

DISCLAIMER = ("Not for clinical use. The embedded default model is tiny and was trained on synthetic phantom "
              "radiographs only; its reports and groundings on real radiographs are unreliable.")
CORRECTION_KINDS = CONTENT_KINDS  # edit, delete, add, flag, relink, accept
ACTIONS = CORRECTION_KINDS + ("undo", "sign", "amend")
DEFAULT_SUPERCLASSES = ("lung halves", "heart region")
CACHE_SIZE = 16
DISPLAY_MIN_SIDE = 512


# ---------------------------------------------------------------------------------------------- plain objects
@dataclass
class Case:
    case_id: str  # pseudonymous: never a patient name or DICOM tag
    source: str  # "phantom", "IU X-ray", "NIH CXR14", "upload"
    image_path: str


@dataclass
class Analysis:
    """What the analyser returns for one radiograph (model.pipeline.CaseAnalysis has these attributes)."""

    segmentation: Segmentation
    report: ReportOutput
    heatmaps: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class ReviewState:
    """The store's view of one case: the model's original report and the reviewer's current one."""

    case_id: str
    status: str
    original: list[Sentence]
    current: list[Sentence]
    notes: dict[int, list[str]] = field(default_factory=dict)  # sentence index -> review notes
    reviewer: str | None = None
    signed: bool = False
    model_version: str = ""

    @property
    def final_text(self) -> str:
        return " ".join(s.text for s in self.current)

    @property
    def original_text(self) -> str:
        return " ".join(s.text for s in self.original)


class Analyser(Protocol):
    model_version: str
    card: dict  # the model card (model_card.json), {} when there is none

    def analyse(self, image: np.ndarray) -> Any: ...


class ReviewStore(Protocol):
    """What the app needs from the review store (db.store.Store via `DbReviewStore`)."""

    def register_case(self, case: Case) -> None: ...

    def has_generation(self, case_id: str, model_version: str) -> bool: ...

    def add_generation(self, case_id: str, report: ReportOutput) -> None: ...

    def state(self, case_id: str) -> ReviewState: ...

    def correct(self, case_id: str, reviewer: str, kind: str, index: int | None = None, text: str | None = None,
                regions: Sequence[str] = (), reason: str | None = None) -> str: ...

    def undo(self, case_id: str, reviewer: str) -> str: ...

    def sign(self, case_id: str, reviewer: str) -> str: ...

    def amend(self, case_id: str, reviewer: str) -> str: ...

    def worklist(self) -> list[WorklistRow]: ...

    def export(self, out_dir: str) -> tuple[str, list[str]]: ...


class DbReviewStore:
    """`ReviewStore` over db.store.Store: one study per case (pseudonymous id), the latest generation reviewed."""

    def __init__(self, store: Store):
        self.db = store
        self._sources: dict[str, str] = {}

    def register_case(self, case: Case) -> None:
        self.db.register_study(case.case_id, case.source, images=[case.image_path])
        self._sources[case.case_id] = case.source

    def _item(self, case_id: str):
        sid = self.db.study_id(case_id)
        return next(i for i in self.db.worklist(order="oldest") if i.study_id == sid)

    def has_generation(self, case_id: str, model_version: str) -> bool:
        """Whether the case's latest report is by this model version (else the app generates a new one)."""
        item = self._item(case_id)
        return item.generation_id is not None and item.model_version == model_version

    def add_generation(self, case_id: str, report: ReportOutput) -> None:
        study = self.db.study(self.db.study_id(case_id))
        self.db.add_generation(study.id, report.model_version or "unknown", report.to_dict(),
                               image_path=study.images[0].path if study.images else None)

    def state(self, case_id: str) -> ReviewState:
        item = self._item(case_id)
        if item.generation_id is None:
            raise KeyError(f"case {case_id!r} has no report yet")
        gen = self.db.generation(item.generation_id)
        original = [Sentence.from_dict(s) for s in gen.output["sentences"]]
        if item.review_id is None:
            current, notes = [Sentence.from_dict(s.to_dict()) for s in original], {}
        else:
            scores = {(s.index, r.name): r.score for s in original for r in s.regions}
            by_index = {s.index: s for s in original}
            current, notes = [], {}
            for f in self.db.final_report(item.review_id):
                current.append(_from_final(f, by_index.get(f.index), scores))
                notes[f.index] = _notes(f)
        return ReviewState(case_id, item.status, original, current, notes, item.reviewer,
                           item.status == "signed", gen.model_version)

    def _review(self, case_id: str, reviewer: str) -> int:
        return self.db.start_review(self.db.study_id(case_id), reviewer)

    def correct(self, case_id: str, reviewer: str, kind: str, index: int | None = None, text: str | None = None,
                regions: Sequence[str] = (), reason: str | None = None) -> str:
        if kind not in ("add", "accept") and index is None:
            raise ValueError(f"{kind}: select a sentence first")
        rid = self._review(case_id, reviewer)
        self.db.apply_correction(rid, kind, reviewer, sentence_index=index,
                                 text=text if kind in ("edit", "add") else None,
                                 reason_code=reason if kind == "flag" else None,
                                 regions=list(regions) if kind in ("relink", "add") else None)
        what = {"edit": "edited", "delete": "deleted", "add": "added", "flag": f"flagged ungrounded ({reason})",
                "relink": f"re-linked to {', '.join(regions) or 'no region'}", "accept": "accepted"}[kind]
        target = "a new sentence" if kind == "add" else ("every sentence" if index is None else f"sentence {index + 1}")
        return f"{target} {what} by {reviewer}"

    def undo(self, case_id: str, reviewer: str) -> str:
        self.db.undo_last(self._review(case_id, reviewer), reviewer)
        return f"last correction undone by {reviewer}"

    def sign(self, case_id: str, reviewer: str) -> str:
        self.db.sign(self._review(case_id, reviewer), reviewer)
        return f"report signed by {reviewer}"

    def amend(self, case_id: str, reviewer: str) -> str:
        self.db.amend(self._review(case_id, reviewer), reviewer)
        return f"signed report re-opened for amendment by {reviewer}"

    def worklist(self) -> list[WorklistRow]:
        return [WorklistRow(i.pseudo_id, i.status, i.model_version or "", i.n_ungrounded, i.reviewer,
                            self._sources.get(i.pseudo_id, "")) for i in self.db.worklist()]

    def export(self, out_dir: str) -> tuple[str, list[str]]:
        from db.export import export
        r = export(self.db, out_dir)
        files = [os.path.join(r.out_dir, name) for name in sorted(r.files)]
        news = f"{len(r.studies_new)} newly signed" if r.written else "nothing new since the last export"
        return f"exported {r.n_entries} signed reports ({r.n_pairs} sentence pairs); {news}", files


def _from_final(f: FinalSentence, model_sentence: Sentence | None, scores: dict) -> Sentence:
    """A replayed sentence as the viewer's Sentence: a flag makes it ungrounded; added ones are not graded."""
    verdict = "ungrounded" if f.flagged else (f.model_verdict if f.origin == "model" else None)
    reasons = list(model_sentence.reasons) if model_sentence is not None and not f.edited else []
    regions = [RegionScore(n, scores.get((f.index, n), 1.0)) for n in f.regions]
    return Sentence(f.index, f.text, regions=regions, verdict=verdict, reasons=reasons)


def _notes(f: FinalSentence) -> list[str]:
    marks = [m for m, on in (("added", f.origin == "reviewer"), ("edited", f.edited), ("accepted", f.accepted),
                             ("re-linked", f.regions_by == "reviewer" and f.origin == "model")) if on]
    if f.flagged:
        marks.append(f"flagged: {f.reason_code}" + (f" ({f.note})" if f.note else ""))
    return [f"{', '.join(marks)} — {f.last_by}"] if marks and f.last_by else []


# ------------------------------------------------------------------------------------------------- backend
class Backend:
    """Cases, analysis (cached per case) and the review store, behind the handlers."""

    def __init__(self, analyser: Analyser, store: ReviewStore, cases: Sequence[Case], data_dir: str,
                 load_analyser: Callable[[str], Analyser] | None = None, models: dict[str, str] | None = None,
                 finetune_data: str | None = None, finetune_cmd: Callable[..., list[str]] | None = None,
                 cache_size: int = CACHE_SIZE):
        self.analyser = analyser
        self.finetune_data = finetune_data  # the training set replayed during fine-tuning (docs/model.md)
        self.finetune_cmd = finetune_cmd or finetune_command
        self._load_analyser = load_analyser
        self.models = dict(models or {})  # model version -> directory, for the Model tab
        self.store = store
        self.data_dir = os.path.abspath(data_dir)
        os.makedirs(os.path.join(self.data_dir, "uploads"), exist_ok=True)
        self.cases: dict[str, Case] = {}
        self._cache: OrderedDict[tuple[str, str], tuple[np.ndarray, Analysis]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()  # guards the cache, shared by all browser sessions
        self._analyse_lock = threading.Lock()
        self._stored: set[tuple[str, str]] = set()  # (model version, case) whose generation is in the store
        for c in cases:
            self.add_case(c)

    def add_case(self, case: Case) -> Case:
        self.cases[case.case_id] = case
        self.store.register_case(case)
        return case

    def case(self, case_id: str) -> Case:
        if case_id not in self.cases:
            raise KeyError(f"unknown case {case_id!r}; open one from the worklist")
        return self.cases[case_id]

    def open(self, case_id: str) -> tuple[np.ndarray, Analysis]:
        """The radiograph and its analysis (analysed once, then served from the cache); the report is stored as a
        generation the first time this model version reports on the case."""
        image, analysis = self._analysis(case_id)
        key = (analysis.report.model_version, case_id)
        if key not in self._stored:
            if not self.store.has_generation(case_id, analysis.report.model_version):
                self.store.add_generation(case_id, analysis.report)
            self._stored.add(key)
        return image, analysis

    def _analysis(self, case_id: str) -> tuple[np.ndarray, Analysis]:
        case = self.case(case_id)
        hit = self._cached(case_id)
        if hit is not None:
            return hit
        with self._analyse_lock:  # one analysis at a time: it is CPU-bound, and a waiting request may want the same
            hit = self._cached(case_id)
            if hit is not None:
                return hit
            analyser = self.analyser
            image = read_radiograph(case.image_path)  # H×W float32 in [0, 1]
            raw = analyser.analyse(image)
            analysis = Analysis(segmentation=raw.segmentation, report=raw.report,
                                heatmaps=dict(getattr(raw, "heatmaps", None) or raw.report.heatmaps or {}))
            with self._lock:
                self._cache[(analyser.model_version, case_id)] = (image, analysis)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
        return image, analysis

    def _cached(self, case_id: str) -> tuple[np.ndarray, Analysis] | None:
        with self._lock:
            key = (self.analyser.model_version, case_id)
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
            return hit

    def upload(self, data: bytes) -> Case:
        """Register an uploaded PNG/JPEG/DICOM. Only pixels are kept (saved as PNG); the id is a hash of them, so
        no patient tag or file name is shown or stored. Raises ImageReadError, or the analyser's ValueError (e.g.
        segmentation finding no lung field), naming the problem; then nothing is registered."""
        image = read_radiograph(data)  # raises ImageReadError naming the problem
        pixels = np.round(image * 65535).astype(np.uint16)
        case_id = "upload-" + hashlib.sha256(pixels.tobytes()).hexdigest()[:10]
        path = os.path.join(self.data_dir, "uploads", case_id + ".png")
        if not os.path.exists(path):
            with atomic_path(path, ".png") as tmp:
                Image.fromarray(pixels).save(tmp, format="PNG")
        if case_id in self.cases:
            return self.cases[case_id]
        # Analyse before registering: an image the model cannot read (no lung field, ...) leaves no worklist row.
        case = Case(case_id, "upload", path)
        self.cases[case_id] = case
        try:
            self._analysis(case_id)
        except BaseException:
            del self.cases[case_id]
            raise
        return self.add_case(case)

    def apply(self, case_id: str, reviewer: str, kind: str, index: int | None = None, text: str | None = None,
              regions: Sequence[str] = (), reason: str | None = None) -> str:
        """One review action through the store, saved at once; returns the confirmation. Raises ValueError naming
        the problem (nothing saved)."""
        self.case(case_id)
        if kind == "undo":
            return self.store.undo(case_id, reviewer)
        if kind == "sign":
            return self.store.sign(case_id, reviewer)
        if kind == "amend":
            return self.store.amend(case_id, reviewer)
        if kind in CORRECTION_KINDS:
            return self.store.correct(case_id, reviewer, kind, index=index, text=text, regions=regions,
                                      reason=reason)
        raise ValueError(f"unknown action {kind!r}; expected one of {list(ACTIONS)}")

    def switch_model(self, version: str) -> str:
        """Serve another model version; cached analyses are dropped, and each case gets a new report (and a new
        review) from this version when next opened."""
        if version == self.analyser.model_version:
            return f"model {version} is already in use"
        if version not in self.models or self._load_analyser is None:
            raise ValueError(f"unknown model version {version!r}; available: {sorted(self.models)}")
        analyser = self._load_analyser(self.models[version])
        with self._lock:
            self.analyser = analyser
            self._cache.clear()
        return f"now using model {analyser.model_version}"

    def view(self, case_id: str, sentence: int | None, region: str | None, settings: ViewSettings) -> dict:
        """Everything the Review screen shows (render_view) plus the selection it resolved to."""
        image, analysis = self.open(case_id)
        state = self.store.state(case_id)
        by_index = {s.index: s for s in state.current}
        if sentence not in by_index:  # deleted meanwhile, or none selected
            sentence = None
        v = render_view(image, analysis, state, sentence, region, settings)
        return {**v, "sentence": sentence, "selected": by_index.get(sentence),
                "regions": list(analysis.segmentation.masks), "state": state}

    def export(self) -> tuple[str, str]:
        """Export signed reviews (incrementally) to data_dir/export and zip them for download."""
        out_dir = os.path.join(self.data_dir, "export")
        msg, files = self.store.export(out_dir)
        zpath = os.path.join(self.data_dir, "groundcxr-export.zip")
        with atomic_path(zpath, ".zip") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for f in files:
                zf.write(f, arcname=os.path.basename(f))
        return msg, zpath

    def fine_tune(self, progress: Callable[[float, str], None]) -> str:
        """Export the signed reviews, fine-tune the current model on them (`python -m model train --from-export`)
        in a child process, and offer the result in the Model tab. progress(fraction, description) is called as
        the trainer reports its epochs."""
        if not self.finetune_data:
            raise ValueError("fine-tuning needs the training set to replay: start the app with --finetune-data DIR")
        init = self.models.get(self.analyser.model_version)
        if init is None:
            raise ValueError(f"the model in use ({self.analyser.model_version}) has no directory to start from")
        export_dir = os.path.join(self.data_dir, "export")
        self.store.export(export_dir)
        with open(os.path.join(export_dir, "annotation.json"), encoding="utf-8") as fh:
            n = len(json.load(fh).get("train", []))
        if n == 0:
            raise ValueError("there is no signed review to learn from yet; sign at least one report")
        name = "ft-" + _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        out = os.path.join(self.data_dir, "models", name)
        cmd = self.finetune_cmd(export_dir=export_dir, init=init, data=self.finetune_data, out=out)
        progress(0.0, f"fine-tuning on {n} signed reports")
        proc = subprocess.Popen(cmd, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        lines, buf = [], b""
        for chunk in iter(lambda: proc.stdout.read1(4096), b""):
            buf += chunk
            *done, buf = re.split(rb"[\r\n]", buf)
            for raw in done:
                line = raw.decode("utf-8", "replace").strip()
                if not line:
                    continue
                lines = (lines + [line])[-30:]
                m = _EPOCH.search(line)
                if m:
                    epoch, epochs, pct = (int(g) for g in m.groups())
                    progress(min(1.0, (epoch - 1 + pct / 100) / epochs), line.split(":")[0])
        rc = proc.wait()
        ckpt = next((ln[len("done: "):] for ln in reversed(lines) if ln.startswith("done: ")), None)
        if rc != 0 or ckpt is None or not os.path.isdir(ckpt):
            raise RuntimeError(f"fine-tuning failed (exit code {rc}): " + " | ".join(lines[-5:]))
        card = {"name": name, "parent": self.analyser.model_version, "fine_tuned_on": f"{n} signed reviews",
                "export": export_dir}
        atomic_write_json(os.path.join(ckpt, "model_card.json"), card, indent=2)
        self.models[name] = ckpt
        progress(1.0, "done")
        return f"fine-tuned model {name} is ready (from {n} signed reports); choose it in the Model tab to use it"

    # -- API payloads (gradio_client) --
    def generate_payload(self, case_id: str) -> dict:
        _, analysis = self.open(case_id)
        state = self.store.state(case_id)
        return {"case_id": case_id, "model_version": analysis.report.model_version,
                "report": analysis.report.to_dict(), "review": _state_dict(state), "disclaimer": DISCLAIMER}


_EPOCH = re.compile(r"epoch (\d+)/(\d+):\s*(\d+)%")  # a tqdm line of model.s2d.train


def finetune_command(export_dir: str, init: str, data: str, out: str) -> list[str]:
    return [sys.executable, "-m", "model", "train", "--from-export", export_dir, "--init", init, "--data", data,
            "--out", out, "--threads", "1"]


def _state_dict(state: ReviewState) -> dict:
    return {"status": state.status, "signed": state.signed, "reviewer": state.reviewer,
            "original_report": state.original_text, "final_report": state.final_text,
            "sentences": [s.to_dict() for s in state.current], "notes": {str(k): v for k, v in state.notes.items()}}


# ------------------------------------------------------------------------------------------------ rendering
@dataclass
class ViewSettings:
    superclasses: list[str]
    classes: list[str]
    opacity: float
    zoom: float


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    if len(ys) == 0:
        return 0.5, 0.5
    return float(ys.mean()) / mask.shape[0], float(xs.mean()) / mask.shape[1]


def render_view(image: np.ndarray, analysis: Analysis, state: ReviewState, sentence: int | None,
                region: str | None, view: ViewSettings) -> dict[str, Any]:
    """Everything the Review screen shows for one case, as plain values (images, HTML, choices)."""
    masks = analysis.segmentation.masks
    by_index = {s.index: s for s in state.current}
    sel = by_index.get(sentence) if sentence is not None else None
    highlight = [r.name for r in sel.regions if r.name in masks or r.name in taxonomy.SUPERCLASSES] if sel else []
    if region:
        highlight = list(dict.fromkeys(highlight + [region]))
    shown = list(view.superclasses) + list(view.classes)
    overlay = compose_overlay(image, masks, selected=shown, opacity=view.opacity, highlight=highlight)
    if view.zoom > 1.0:
        lit = [n for n in highlight if n in masks]
        center = _centroid(np.any([masks[n] for n in lit], axis=0)) if lit else (0.5, 0.5)
        overlay = zoom(overlay, view.zoom, center)
    legend_names = [n for n in masks if n in set(_expand(shown, masks)) | set(_expand(highlight, masks))]
    heat = analysis.heatmaps.get(sentence) if sentence is not None else None
    heat_img = _display_size(render_heatmap(image, heat)) if heat is not None else None
    if sel is None:
        heat_note = "Select a sentence to see its evidence map."
    elif heat is None:
        heat_note = "This sentence has no evidence map (the reviewer added it)."
    else:
        heat_note = f"Evidence map of sentence {sel.index + 1} ({analysis.report.grounding_method or 'grounding'})."
        original = next((s.text for s in state.original if s.index == sel.index), sel.text)
        if original != sel.text:
            heat_note += " It shows the model's evidence for its original wording, before the reviewer's edit."
    in_region = ""
    if region:
        hits = sentences_in_region(state.current, region)
        in_region = report_html(hits, title=f"Sentences grounded in {region}") if hits else \
            f"<p><em>No sentence is grounded in {_esc(region)}.</em></p>"
    return {
        "overlay": _display_size(overlay), "legend": legend_html(legend_names, highlight=highlight), "heatmap": heat_img,
        "heat_note": heat_note,
        "report": report_html(state.current, selected=sentence, notes=state.notes,
                              title=f"Report for {state.case_id} — {state.status}", disclaimer=DISCLAIMER),
        "compare": side_by_side_html(state.original_text, state.final_text),
        "sentence_choices": [(f"{s.index + 1}. {s.text}", str(s.index)) for s in state.current],
        "in_region": in_region,
    }


def _display_size(rgb: np.ndarray, min_side: int = DISPLAY_MIN_SIDE) -> np.ndarray:
    """Small radiographs (phantoms are 256 px) are enlarged by an integer factor, pixel-exact, for the screen."""
    k = -(-min_side // min(rgb.shape[:2]))  # ceil
    return rgb if k <= 1 else np.repeat(np.repeat(rgb, k, axis=0), k, axis=1)


def _expand(names, masks) -> list[str]:
    out = []
    for n in names:
        out.extend(m for m in taxonomy.SUPERCLASSES.get(n, (n,)) if m in masks)
    return out


def _esc(text: str) -> str:
    return html.escape(text)


def _model_md(analyser: Analyser) -> str:
    """The model card as a list; card values are escaped (a card is a file anyone can write)."""
    lines = [f"**Model version:** {html.escape(analyser.model_version)}", "", DISCLAIMER, ""]
    card_md = getattr(analyser, "card_md", "")
    if not analyser.card and not card_md:
        lines.append("No model card (model_card.json or MODEL_CARD.md) in the model directory.")
    for k, v in analyser.card.items():
        v = json.dumps(v) if isinstance(v, (dict, list)) else str(v)
        lines.append(f"- **{html.escape(str(k))}**: {html.escape(v)}")
    if card_md:  # the model directory's own card; gr.Markdown sanitises any HTML in it
        lines += ["", card_md]
    return "\n".join(lines)


def _note(text: str, ok: bool) -> str:
    """A confirmation or refusal line; escaped, because it quotes file names, reviewer names and report text."""
    colour, mark = ("#1a7f37", "✔") if ok else ("#cf222e", "⚠")
    return f'<span style="color:{colour}">{mark} {html.escape(text)}</span>'


# ----------------------------------------------------------------------------------------------------- UI
CSS = """
.gcxr-report ol { padding-left: 1.4em; }
.gcxr-disclaimer { color: #9a6700; }
#gcxr-status { min-height: 1.5em; }
"""


def build_app(backend: Backend, title: str = "GroundCXR review") -> gr.Blocks:
    present_classes = sorted(taxonomy.CLASS_NAMES)
    with gr.Blocks(title=title) as demo:
        # gr.Blocks overwrites this with "True" when analytics are off; keep the project's value (model/__init__.py)
        # so that processes started from here see one consistent offline environment.
        os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
        gr.Markdown(f"# {title}\n**{DISCLAIMER}**")
        case_id = gr.State(None)
        with gr.Row():
            reviewer = gr.Textbox(label="Reviewer", placeholder="your name (recorded on every correction)",
                                  elem_id="gcxr-reviewer", scale=1)
            status = gr.HTML("", elem_id="gcxr-status")
        with gr.Tabs() as tabs:
            with gr.Tab("Worklist", id="worklist"):
                with gr.Row():
                    order = gr.Radio(list(ORDERS), value="most ungrounded first", label="Order",
                                     elem_id="gcxr-order")
                    refresh = gr.Button("Refresh", scale=0)
                table = gr.Dataframe(headers=HEADERS, value=worklist_table(backend.store.worklist()),
                                     interactive=False, type="array", elem_id="gcxr-worklist")
                with gr.Row():
                    pick = gr.Dropdown(choices=sorted(backend.cases), value=None, label="Case",
                                       elem_id="gcxr-case", allow_custom_value=False)
                    open_btn = gr.Button("Open case", variant="primary", elem_id="gcxr-open")
                upload = gr.File(label="Upload a radiograph (PNG, JPEG or DICOM; only pixels are kept)",
                                 file_types=[".png", ".jpg", ".jpeg", ".dcm"], type="filepath",
                                 elem_id="gcxr-upload")
            with gr.Tab("Review", id="review"):
                with gr.Row():
                    with gr.Column(scale=3):
                        overlay = gr.Image(label="Radiograph with CXAS overlays", format="png", type="numpy",
                                           interactive=False, elem_id="gcxr-overlay", height=520,
                                           buttons=["fullscreen", "download"])
                        with gr.Row():
                            opacity = gr.Slider(0.0, 1.0, value=0.35, step=0.05, label="Overlay opacity")
                            zoom_s = gr.Slider(1.0, 4.0, value=1.0, step=0.5, label="Zoom (centred on selection)")
                        supers = gr.CheckboxGroup(list(taxonomy.SUPERCLASS_NAMES), value=list(DEFAULT_SUPERCLASSES),
                                                  label="Overlays by superclass", elem_id="gcxr-supers")
                        with gr.Accordion("Overlays by class", open=False):
                            classes = gr.CheckboxGroup(present_classes, value=[], label="Classes")
                        legend = gr.HTML(elem_id="gcxr-legend")
                        heat_note = gr.Markdown()
                        heatmap = gr.Image(label="Evidence map of the selected sentence", format="png",
                                           type="numpy", interactive=False, elem_id="gcxr-heatmap", height=380)
                    with gr.Column(scale=3):
                        report = gr.HTML(elem_id="gcxr-report")
                        sentence = gr.Radio([], label="Select a sentence", elem_id="gcxr-sentence")
                        region = gr.Dropdown([], value=None, label="Select a region (shows sentences grounded in it)",
                                             elem_id="gcxr-region")
                        in_region = gr.HTML(elem_id="gcxr-in-region")
                        with gr.Group():
                            text = gr.Textbox(label="Sentence text (edit / add)", elem_id="gcxr-text")
                            reason = gr.Dropdown(list(REASON_CODES), value=REASON_CODES[0],
                                                 label="Reason code (flag ungrounded)", elem_id="gcxr-reason")
                            relink = gr.Dropdown([], value=[], multiselect=True, label="Re-link to regions",
                                                 elem_id="gcxr-relink")
                            with gr.Row():
                                b_edit = gr.Button("Save edit", elem_id="gcxr-edit")
                                b_delete = gr.Button("Delete", elem_id="gcxr-delete")
                                b_add = gr.Button("Add finding", elem_id="gcxr-add")
                                b_flag = gr.Button("Flag ungrounded", elem_id="gcxr-flag")
                            with gr.Row():
                                b_relink = gr.Button("Re-link", elem_id="gcxr-relink-btn")
                                b_accept = gr.Button("Accept", elem_id="gcxr-accept")
                                b_undo = gr.Button("Undo last", elem_id="gcxr-undo")
                                b_sign = gr.Button("Sign report", variant="primary", elem_id="gcxr-sign")
                                b_amend = gr.Button("Amend signed", elem_id="gcxr-amend")
                        compare = gr.HTML(elem_id="gcxr-compare")
            with gr.Tab("Export", id="export"):
                gr.Markdown("Export the signed reviews as a training set (R2Gen `annotation.json`, sentence "
                            "`pairs.jsonl`, `manifest.json`; incremental) and download it as a zip.")
                b_export = gr.Button("Export corrections", elem_id="gcxr-export")
                export_file = gr.File(label="Download", interactive=False, elem_id="gcxr-export-file")
            with gr.Tab("Model", id="model"):
                with gr.Row():
                    model_pick = gr.Dropdown(sorted(set(backend.models) | {backend.analyser.model_version}),
                                             value=backend.analyser.model_version, label="Model version",
                                             elem_id="gcxr-model")
                    b_model = gr.Button("Use this model", scale=0)
                model_card = gr.Markdown(_model_md(backend.analyser), elem_id="gcxr-model-card")
                gr.Markdown("Fine-tune the model in use on the signed reviews (stage 3 again, with replayed "
                            "training cases so it does not forget the rest); the new version appears above.")
                b_ft = gr.Button("Fine-tune from corrections", elem_id="gcxr-finetune")

        view_inputs = [case_id, sentence, region, supers, classes, opacity, zoom_s]
        view_outputs = [overlay, legend, heatmap, heat_note, report, compare, sentence, in_region, region, relink,
                        text]

        def _reviewer(name: str, request: gr.Request | None) -> str:
            user = getattr(request, "username", None) if request is not None else None
            name = (user or name or "").strip()
            if not name:
                raise _UserError("enter your reviewer name first (it is recorded on every correction)")
            return name

        def _view(cid, sent, reg, sup, cls, op, zm, keep_text=False) -> dict:
            idx = int(sent) if sent not in (None, "") else None
            v = backend.view(cid, idx, reg or None, ViewSettings(sup or [], cls or [], op, zm))
            idx, regions_here, sel = v["sentence"], v["regions"], v["selected"]
            out = {overlay: v["overlay"], legend: v["legend"], heatmap: v["heatmap"], heat_note: v["heat_note"],
                   report: v["report"], compare: v["compare"], in_region: v["in_region"],
                   sentence: gr.update(choices=v["sentence_choices"], value=str(idx) if idx is not None else None),
                   region: gr.update(choices=regions_here, value=reg or None),
                   relink: gr.update(choices=regions_here,
                                     value=[r.name for r in sel.regions if r.name in regions_here] if sel else [])}
            if not keep_text:
                out[text] = sel.text if sel else ""
            return out

        def open_case(cid, sup, cls, op, zm):
            if not cid:
                return {status: _note("choose a case first", ok=False)}
            try:
                out = _view(cid, None, None, sup, cls, op, zm)
            except (KeyError, ValueError) as exc:  # ImageReadError and SegmentationError are ValueErrors
                return {status: _note(f"cannot open {cid}: {_msg(exc)}", ok=False)}
            return {**out, case_id: cid, tabs: gr.Tabs(selected="review"),
                    status: _note(f"Opened {cid} ({backend.case(cid).source}).", ok=True),
                    table: worklist_table(backend.store.worklist())}

        def redraw(cid, sent, reg, sup, cls, op, zm):
            if not cid:
                return {}
            return _view(cid, sent, reg, sup, cls, op, zm)

        def redraw_keep_text(cid, sent, reg, sup, cls, op, zm):
            if not cid:
                return {}
            return _view(cid, sent, reg, sup, cls, op, zm, keep_text=True)

        def make_action(kind: str) -> Callable:
            def act(cid, name, sent, reg, sup, cls, op, zm, txt, rsn, links, request: gr.Request):
                if not cid:
                    return {status: _note("open a case first", ok=False)}
                try:
                    who = _reviewer(name, request)
                    idx = int(sent) if sent not in (None, "") else None
                    msg = backend.apply(cid, who, kind, idx, txt, links or [], rsn)
                except (_UserError, ValueError, KeyError) as exc:
                    return {status: _note(f"{_msg(exc)} — nothing was saved.", ok=False)}
                if kind in ("delete", "undo"):
                    sent = None
                out = _view(cid, sent, reg, sup, cls, op, zm)
                stamp = _dt.datetime.now().strftime("%H:%M:%S")
                out[status] = _note(f"Saved at {stamp}: {msg}", ok=True)
                out[table] = worklist_table(backend.store.worklist(), "most ungrounded first")
                return out
            return act

        def do_upload(path, sup, cls, op, zm):
            if not path:
                return {}
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                case = backend.upload(data)
            except ValueError as exc:  # unreadable image, or one the model cannot analyse
                return {status: _note(f"upload refused: {_msg(exc)}", ok=False)}
            out = open_case(case.case_id, sup, cls, op, zm)
            out[pick] = gr.update(choices=sorted(backend.cases), value=case.case_id)
            out[upload] = None
            return out

        def do_export():
            try:
                msg, path = backend.export()
            except (ValueError, OSError) as exc:
                return {status: _note(f"export failed: {_msg(exc)}", ok=False)}
            return {export_file: path, status: _note(msg, ok=True)}

        def pick_row(sup, cls, op, zm, evt: gr.SelectData):
            row = evt.row_value or []
            if not row:
                return {}
            return {**open_case(row[0], sup, cls, op, zm), pick: row[0]}

        def use_model(version):
            try:
                msg = backend.switch_model(version)
            except (ValueError, OSError) as exc:
                return {status: _note(_msg(exc), ok=False)}
            return {status: _note(msg, ok=True), model_card: _model_md(backend.analyser)}

        def fine_tune(progress=gr.Progress()):
            try:
                msg = backend.fine_tune(lambda frac, desc: progress(frac, desc=desc))
            except (ValueError, RuntimeError, OSError) as exc:
                return {status: _note(_msg(exc), ok=False)}
            return {status: _note(msg, ok=True),
                    model_pick: gr.update(choices=sorted(set(backend.models) | {backend.analyser.model_version}))}

        def sort_worklist(o):
            return worklist_table(backend.store.worklist(), o)

        all_out = view_outputs + [case_id, tabs, status, table, pick, upload]
        open_btn.click(open_case, [pick, supers, classes, opacity, zoom_s], all_out)
        table.select(pick_row, [supers, classes, opacity, zoom_s], all_out)
        sentence.input(redraw, view_inputs, view_outputs)
        region.input(redraw_keep_text, view_inputs, view_outputs)
        for ctl in (supers, classes, opacity, zoom_s):
            ctl.input(redraw_keep_text, view_inputs, view_outputs)
        act_inputs = [case_id, reviewer, sentence, region, supers, classes, opacity, zoom_s, text, reason, relink]
        for btn, kind in ((b_edit, "edit"), (b_delete, "delete"), (b_add, "add"), (b_flag, "flag"),
                          (b_relink, "relink"), (b_accept, "accept"), (b_undo, "undo"), (b_sign, "sign"),
                          (b_amend, "amend")):
            btn.click(make_action(kind), act_inputs, view_outputs + [status, table])
        upload.upload(do_upload, [upload, supers, classes, opacity, zoom_s], all_out)
        order.input(sort_worklist, [order], [table])
        refresh.click(sort_worklist, [order], [table])
        b_export.click(do_export, None, [export_file, status])
        b_model.click(use_model, [model_pick], [status, model_card])
        b_ft.click(fine_tune, None, [status, model_pick])

        def on_page_load(request: gr.Request):
            # A fresh page sees the current worklist (uploads and reviews since start-up). With --user logins the
            # reviewer is the logged-in name, not a free text field.
            user = getattr(request, "username", None)
            return {reviewer: gr.update(value=user, interactive=False) if user else gr.update(),
                    table: worklist_table(backend.store.worklist()),
                    pick: gr.update(choices=sorted(backend.cases))}

        demo.load(on_page_load, None, [reviewer, table, pick])

        # gradio_client API (docs/app.md): JSON in, JSON out.
        def generate(case_id: str) -> dict:
            """Analyse a case (cached) and return its report with per-sentence regions and verdicts, and the review."""
            try:
                return backend.generate_payload(case_id)
            except (KeyError, ValueError) as exc:
                raise gr.Error(_msg(exc)) from None

        def correct(case_id: str, reviewer: str, kind: str, sentence_index: int | None = None, text: str = "",
                    regions: list[str] | None = None, reason: str = "") -> dict:
            """Apply one correction (edit, delete, add, flag, relink, accept, undo, sign, amend); returns the
            review state after it."""
            if not reviewer or not reviewer.strip():
                raise gr.Error("reviewer is required: it is recorded on every correction")
            try:
                msg = backend.apply(case_id, reviewer.strip(), kind, sentence_index, text or None, regions or [],
                                    reason or None)
            except (ValueError, KeyError) as exc:  # the store's refusal, named; nothing was saved
                raise gr.Error(_msg(exc)) from None
            return {"message": msg, "review": _state_dict(backend.store.state(case_id))}

        def worklist() -> list[list]:
            """The worklist rows, most ungrounded first: case, status, model version, ungrounded, reviewer, source."""
            return worklist_table(backend.store.worklist())

        gr.api(generate, api_name="generate")
        gr.api(correct, api_name="correct")
        gr.api(worklist, api_name="worklist")
    return demo


class _UserError(ValueError):
    pass


def _msg(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


# ----------------------------------------------------------------------------------------------- launching
def launch(backend: Backend, host: str = "127.0.0.1", port: int | None = None, auth=None,
           block: bool = True) -> gr.Blocks:
    """Serve the app. Only assets/ and the app's data folder are readable through gradio's file routes."""
    demo = build_app(backend)
    demo.queue(default_concurrency_limit=2)
    demo.launch(server_name=host, server_port=port, auth=auth, prevent_thread_lock=not block,
                allowed_paths=[ASSETS_DIR, backend.data_dir], css=CSS, footer_links=["api"], show_error=False,
                quiet=True, ssr_mode=False)
    return demo


def _parse_auth(values: Sequence[str]) -> list[tuple[str, str]] | None:
    pairs = []
    for v in values:
        user, sep, pw = v.partition(":")
        if not sep or not user or not pw:
            raise SystemExit(f"--user expects NAME:PASSWORD, got {v!r}")
        pairs.append((user, pw))
    return pairs or None


class PipelineAnalyser:
    """model.pipeline.Pipeline with the model version and card the Model tab shows."""

    def __init__(self, model_dir: str | None):
        from model.pipeline import Pipeline
        self.model_dir = model_dir or os.path.join(ASSETS_DIR, "model")
        self.card = _read_card(self.model_dir)
        card_md = os.path.join(self.model_dir, "MODEL_CARD.md")
        self.card_md = open(card_md, encoding="utf-8").read() if os.path.isfile(card_md) else ""
        self.pipeline = Pipeline(model_dir=model_dir)

    @property
    def model_version(self) -> str:
        """The generator's own version string, the one it writes into every report (loads the model)."""
        return self.pipeline.generator.model_version

    def warm(self) -> None:
        """Load the generator now (at start-up) rather than on the first case a reviewer opens."""
        self.pipeline.generator  # noqa: B018  (the property loads it)

    def analyse(self, image: np.ndarray):
        return self.pipeline.analyse(image)


def _read_card(model_dir: str) -> dict:
    path = os.path.join(model_dir, "model_card.json")
    if not os.path.isfile(path):
        return {}
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def find_models(roots: Sequence[str]) -> dict[str, str]:
    """Model directories (a model_card.json inside) directly under `roots`: card name (or folder) -> path."""
    found = {}
    for root in roots:
        if not os.path.isdir(root):
            continue
        for d in sorted(os.listdir(root)):
            path = os.path.join(root, d)
            if os.path.isfile(os.path.join(path, "model_card.json")):
                found[str(_read_card(path).get("name") or d)] = path
    return found


def make_backend(model_dir: str | None, db_url: str | None, data_dir: str,
                 finetune_data: str | None = None) -> Backend:
    """The real services: the S2D-ALIGN pipeline, the SQL review store and the demo cases in assets/demo."""
    from model.demo import load_demo_cases
    os.makedirs(data_dir, exist_ok=True)
    url = db_url or "sqlite:///" + os.path.join(os.path.abspath(data_dir), "groundcxr.db")
    analyser = PipelineAnalyser(model_dir)
    analyser.warm()  # at start-up, not on the first case a reviewer opens
    cases = [Case(c.id, c.source, c.image_path) for c in load_demo_cases()]
    models = find_models([ASSETS_DIR, os.path.join(data_dir, "models")])
    models[analyser.model_version] = analyser.model_dir
    return Backend(analyser, DbReviewStore(Store(url)), cases, data_dir, load_analyser=PipelineAnalyser,
                   models=models, finetune_data=finetune_data)


def set_torch_threads(n: int) -> None:
    """torch intra-op threads for generation and grounding; 0 leaves torch's default (one per core).

    The default of 1 is deliberate: the tiny model's matrices are too small to gain from splitting, and with
    torch's default of 2 threads on a busy 2-core machine generation ran several times slower than with 1, the
    threads contending for the cores (docs/model.md). torch is imported here, at start-up, not when app.py is
    imported."""
    if n < 0:
        raise SystemExit(f"--threads expects 0 or more, got {n}")
    if n:
        import torch

        torch.set_num_threads(n)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", default=None, help="SQLAlchemy URL of the review store (default: sqlite in --data-dir)")
    p.add_argument("--model", default=None, help="model directory (default: the embedded default in assets/)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--data-dir", default=os.path.join(PROJECT_ROOT, ".groundcxr"),
                   help="where uploads, exports and the default database live")
    p.add_argument("--finetune-data", default=None, metavar="DIR",
                   help="training set (R2Gen layout, e.g. from `python -m model phantom`) replayed when fine-tuning "
                        "from corrections in the Model tab; without it fine-tuning is off")
    p.add_argument("--user", action="append", default=[], metavar="NAME:PASSWORD",
                   help="require login; the logged-in name is recorded on every correction (repeatable)")
    p.add_argument("--threads", type=int, default=1, metavar="N",
                   help="torch intra-op threads (default 1: the tiny model gains nothing from more and slows down "
                        "when threads contend on a busy CPU; 0: torch's default)")
    args = p.parse_args(argv)
    auth = _parse_auth(args.user)
    set_torch_threads(args.threads)  # before the model loads
    try:
        backend = make_backend(args.model, args.db, args.data_dir, args.finetune_data)  # loads the model
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"error: cannot load the model: {exc} (pass --model DIR)") from None
    launch(backend, args.host, args.port, auth=auth)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
