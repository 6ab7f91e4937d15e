"""The Review app's event handlers: each takes the components' plain values and returns plain values keyed by
component; the work itself is the review service's (review/), the drawing the screen's (ui/screen.py)."""
from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import gradio as gr

from review.identity import IdentityError, session_reviewer
from review.service import ReviewService
from ui.layout import Components
from ui.screen import ViewSettings, case_view, model_md, note
from viewer.worklist import worklist_table


class UserError(ValueError):
    pass


def message(exc: BaseException) -> str:
    return str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)


def reviewer_name(name: str, request: gr.Request | None) -> str:
    """With --user logins the logged-in name (a different name is refused), else the name typed in, normalised
    (db/names.py); refused when empty or when it holds invisible, control or look-alike characters."""
    user = getattr(request, "username", None) if request is not None else None
    if not user and not (name or "").strip():
        raise UserError("enter your reviewer name first (it is recorded on every correction)")
    try:
        return session_reviewer(name, user)
    except IdentityError as exc:
        raise UserError(str(exc)) from None


def discard_upload(path: str | None) -> None:
    """Delete Gradio's cached copy of an upload (original bytes, original file name) once its pixels are taken,
    or once it is refused: only the pixels the service stored remain."""
    if not path:
        return
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.remove(path)
        if not os.listdir(folder):  # Gradio keeps each upload in a folder of its own, named by a hash
            os.rmdir(folder)
    except OSError:
        pass  # gone already


class Handlers:
    def __init__(self, service: ReviewService, c: Components):
        self.service, self.c = service, c
        self.view_inputs = [c.case_id, c.sentence, c.region, c.supers, c.classes, c.opacity, c.zoom]
        self.view_outputs = [c.overlay, c.legend, c.heatmap, c.heat_note, c.report, c.compare, c.sentence,
                             c.in_region, c.region, c.relink, c.text]
        self.open_outputs = self.view_outputs + [c.case_id, c.tabs, c.status, c.table, c.pick, c.upload]

    def wait_for_analysis(self, cid) -> Iterator[dict]:
        """Before opening a case that is not analysed yet: queue it and show its place in line while it waits, so
        a reviewer behind a heavy image sees why, and one whose case is analysed already never waits here."""
        if not cid or cid not in self.service.cases or self.service.is_analysed(cid):
            return
        job = self.service.analyse_later(cid)
        shown = None
        while not job.done():
            ahead = self.service.queue_position(cid)
            text = (f"{cid}: waiting for analysis, {ahead} ahead of it in the queue" if ahead
                    else f"{cid}: analysing…")
            if text != shown:
                shown = text
                yield {self.c.status: note(text, ok=True)}
            time.sleep(0.25)

    def view(self, cid, sent, reg, sup, cls, op, zm, keep_text=False) -> dict:
        c = self.c
        idx = int(sent) if sent not in (None, "") else None
        v = case_view(self.service, cid, idx, reg or None, ViewSettings(sup or [], cls or [], op, zm))
        idx, regions_here, sel = v["sentence"], v["regions"], v["selected"]
        out = {c.overlay: v["overlay"], c.legend: v["legend"], c.heatmap: v["heatmap"], c.heat_note: v["heat_note"],
               c.report: v["report"], c.compare: v["compare"], c.in_region: v["in_region"],
               c.sentence: gr.update(choices=v["sentence_choices"], value=str(idx) if idx is not None else None),
               c.region: gr.update(choices=regions_here, value=reg or None),
               c.relink: gr.update(choices=regions_here,
                                   value=[r.name for r in sel.regions if r.name in regions_here] if sel else [])}
        if not keep_text:
            out[c.text] = sel.text if sel else ""
        return out

    def open_queued(self, cid, sup, cls, op, zm) -> Iterator[dict]:
        """open_case, after waiting in the analysis queue with the place shown (wait_for_analysis)."""
        yield from self.wait_for_analysis(cid)
        yield self.open_case(cid, sup, cls, op, zm)

    def open_case(self, cid, sup, cls, op, zm) -> dict:
        c = self.c
        if not cid:
            return {c.status: note("choose a case first", ok=False)}
        try:
            out = self.view(cid, None, None, sup, cls, op, zm)
        except (KeyError, ValueError) as exc:  # ImageReadError and SegmentationError are ValueErrors
            return {c.status: note(f"cannot open {cid}: {message(exc)}", ok=False)}
        return {**out, c.case_id: cid, c.tabs: gr.Tabs(selected="review"),
                c.status: note(f"Opened {cid} ({self.service.case(cid).source}).", ok=True),
                c.table: worklist_table(self.service.store.worklist())}

    def redraw(self, cid, sent, reg, sup, cls, op, zm) -> dict:
        return self.view(cid, sent, reg, sup, cls, op, zm) if cid else {}

    def redraw_keep_text(self, cid, sent, reg, sup, cls, op, zm) -> dict:
        return self.view(cid, sent, reg, sup, cls, op, zm, keep_text=True) if cid else {}

    def action(self, kind: str) -> Callable:
        c = self.c

        def act(cid, name, sent, reg, sup, cls, op, zm, txt, rsn, links, override, request: gr.Request):
            if not cid:
                return {c.status: note("open a case first", ok=False)}
            try:
                who = reviewer_name(name, request)
                idx = int(sent) if sent not in (None, "") else None
                msg = self.service.apply(cid, who, kind, idx, txt, links or [], rsn,
                                         override=bool(override) and kind in ("sign", "amend"))
            except (UserError, ValueError, KeyError) as exc:
                return {c.status: note(f"{message(exc)} — nothing was saved.", ok=False)}
            if kind in ("delete", "undo"):
                sent = None
            out = self.view(cid, sent, reg, sup, cls, op, zm)
            out[c.status] = note(f"Saved at {dt.datetime.now().strftime('%H:%M:%S')}: {msg}", ok=True)
            out[c.table] = worklist_table(self.service.store.worklist(), "most ungrounded first")
            return out
        return act

    def do_upload(self, path, sup, cls, op, zm) -> dict:
        c = self.c
        if not path:
            return {}
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        finally:
            discard_upload(path)  # accepted or refused, the original bytes do not stay in Gradio's cache
        try:
            case = self.service.upload(data)
        except ValueError as exc:  # unreadable image, or one the model cannot analyse
            return {c.status: note(f"upload refused: {message(exc)}", ok=False), c.upload: None}
        out = self.open_case(case.case_id, sup, cls, op, zm)
        out[c.pick] = gr.update(choices=sorted(self.service.cases), value=case.case_id)
        out[c.upload] = None
        return out

    def do_export(self) -> dict:
        try:
            msg, path = self.service.export()
            # Handed to Gradio from a temp folder: the data folder itself is never served (ui.launch blocks it).
            download = shutil.copy(path, tempfile.mkdtemp(prefix="gcxr-export-"))
        except (ValueError, OSError) as exc:
            return {self.c.status: note(f"export failed: {message(exc)}", ok=False)}
        return {self.c.export_file: download, self.c.status: note(msg, ok=True)}

    def pick_row(self, sup, cls, op, zm, evt: gr.SelectData) -> Iterator[dict]:
        row = evt.row_value or []
        if not row:
            yield {}
            return
        yield from self.wait_for_analysis(row[0])
        yield {**self.open_case(row[0], sup, cls, op, zm), self.c.pick: row[0]}

    def use_model(self, version, force=False) -> dict:
        gate = self.service.gate_markdown(version)
        try:
            msg = self.service.switch_model(version, force=bool(force))
        except (ValueError, OSError) as exc:
            return {self.c.status: note(message(exc), ok=False), self.c.gate: gate}
        return {self.c.status: note(msg, ok=True), self.c.model_card: model_md(self.service.analyser),
                self.c.gate: gate}

    def fine_tune(self, progress=gr.Progress()) -> dict:
        try:
            msg = self.service.fine_tune(lambda frac, desc: progress(frac, desc=desc))
        except (ValueError, RuntimeError, OSError) as exc:
            return {self.c.status: note(message(exc), ok=False)}
        versions = sorted(set(self.service.models) | {self.service.analyser.model_version})
        return {self.c.status: note(msg, ok=True), self.c.model_pick: gr.update(choices=versions),
                self.c.gate: self.service.gate_markdown(self.service.last_fine_tune or "")}

    def cancel_fine_tune(self) -> dict:
        return {self.c.status: note(self.service.cancel_fine_tune(), ok=True)}

    def sort_worklist(self, order) -> list[list]:
        return worklist_table(self.service.store.worklist(), order)

    def on_page_load(self, request: gr.Request) -> dict:
        # A fresh page sees the current worklist (uploads and reviews since start-up). With --user logins the
        # reviewer is the logged-in name, not a free text field.
        c, user = self.c, getattr(request, "username", None)
        return {c.reviewer: gr.update(value=user, interactive=False) if user else gr.update(),
                c.table: worklist_table(self.service.store.worklist()),
                c.pick: gr.update(choices=sorted(self.service.cases))}


def wire(c: Components, h: Handlers, demo: gr.Blocks) -> None:
    """Connect every component's events to its handler."""
    view_controls = [c.supers, c.classes, c.opacity, c.zoom]
    c.open_btn.click(h.open_queued, [c.pick, *view_controls], h.open_outputs, api_name="open_case")
    c.table.select(h.pick_row, view_controls, h.open_outputs)
    c.sentence.input(h.redraw, h.view_inputs, h.view_outputs)
    c.region.input(h.redraw_keep_text, h.view_inputs, h.view_outputs)
    for ctl in view_controls:
        ctl.input(h.redraw_keep_text, h.view_inputs, h.view_outputs)
    act_inputs = [c.case_id, c.reviewer, c.sentence, c.region, *view_controls, c.text, c.reason, c.relink,
                  c.override]
    for kind, btn in c.actions.items():
        btn.click(h.action(kind), act_inputs, h.view_outputs + [c.status, c.table])
    # Analyses (an upload, a case opened for the first time) share one queue of one (review/analysis_queue.py);
    # redraws of analysed cases never wait behind them.
    c.upload.upload(h.do_upload, [c.upload, *view_controls], h.open_outputs, concurrency_limit=4)
    c.order.input(h.sort_worklist, [c.order], [c.table])
    c.refresh.click(h.sort_worklist, [c.order], [c.table])
    c.b_export.click(h.do_export, None, [c.export_file, c.status])
    c.b_model.click(h.use_model, [c.model_pick, c.model_force], [c.status, c.model_card, c.gate])
    c.b_ft.click(h.fine_tune, None, [c.status, c.model_pick, c.gate])
    c.b_ft_cancel.click(h.cancel_fine_tune, None, [c.status])
    demo.load(h.on_page_load, None, [c.reviewer, c.table, c.pick])
