"""The Review app's event handlers: each takes the components' plain values and returns plain values keyed by
component; the work itself is the review service's (review/), the drawing the screen's (ui/screen.py)."""
from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator

import gradio as gr

from review.identity import IdentityError, session_reviewer
from review.service import ReviewService
from ui.layout import Components
from ui.screen import DEFAULT_VIEW, ViewSettings, case_view, model_card_html, model_card_text, note, produced_classes
from viewer.viewport import click_to_center, display_shape
from viewer.worklist import status_counts, worklist_table


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
        self.view_controls = [c.supers, c.classes, c.opacity, c.zoom, c.level, c.width, c.invert]
        self.view_inputs = [c.case_id, c.sentence, c.region, *self.view_controls, c.center]
        self.view_outputs = [c.overlay, c.legend, c.heatmap, c.heat_note, c.report, c.compare, c.sentence,
                             c.in_region, c.region, c.relink, c.text, c.box]
        # Opening a case resets its view (zoom, pan, window, overlays): nothing carries over from the last case.
        self.open_outputs = self.view_outputs + self.view_controls + [
            c.center, c.case_id, c.tabs, c.status, c.table, c.counts, c.pick, c.upload, c.action_msg,
            c.confirm_sign, c.confirm_n, c.worklist_msg]

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

    def view(self, cid, sent, reg, sup, cls, op, zm, lv, wd, inv, ctr, keep_text=False) -> dict:
        c = self.c
        idx = int(sent) if sent not in (None, "") else None
        settings = ViewSettings(sup or [], cls or [], op, zm, tuple(ctr) if ctr else None, lv, wd, bool(inv))
        v = case_view(self.service, cid, idx, reg or None, settings)
        idx, regions_here, sel = v["sentence"], v["regions"], v["selected"]
        out = {c.overlay: gr.update(value=v["overlay"], label=v["overlay_label"]), c.legend: v["legend"],
               c.heatmap: v["heatmap"], c.heat_note: v["heat_note"], c.box: v["box"],
               c.report: v["report"], c.compare: v["compare"], c.in_region: v["in_region"],
               c.sentence: gr.update(choices=v["sentence_choices"], value=str(idx) if idx is not None else None),
               c.region: gr.update(choices=regions_here, value=reg or None),
               c.relink: gr.update(choices=regions_here,
                                   value=[r.name for r in sel.regions if r.name in regions_here] if sel else [])}
        if not keep_text:
            out[c.text] = sel.text if sel else ""
        return out

    def worklist_outputs(self, order: str = "most ungrounded first") -> dict:
        rows = self.service.store.worklist()
        return {self.c.table: worklist_table(rows, order), self.c.counts: status_counts(rows)}

    def open_queued(self, cid) -> Iterator[dict]:
        """open_case, after waiting in the analysis queue with the place shown (wait_for_analysis)."""
        yield from self.wait_for_analysis(cid)
        yield self.open_case(cid)

    def open_case(self, cid) -> dict:
        c, d = self.c, DEFAULT_VIEW
        if not cid:
            return self._refused("choose a case first")
        try:
            out = self.view(cid, None, None, d.superclasses, d.classes, d.opacity, d.zoom, d.level, d.width,
                            d.invert, None)
            _, analysis = self.service.open(cid)
        except (KeyError, ValueError) as exc:  # ImageReadError and SegmentationError are ValueErrors
            return self._refused(f"cannot open {cid}: {message(exc)}")
        return {**out, **self.worklist_outputs(), c.case_id: cid, c.tabs: gr.Tabs(selected="review"),
                c.status: note(f"Opened {cid} ({self.service.case(cid).source}).", ok=True),
                c.supers: list(d.superclasses), c.classes: gr.update(choices=produced_classes(analysis), value=[]),
                c.opacity: d.opacity, c.zoom: d.zoom, c.level: d.level, c.width: d.width, c.invert: d.invert,
                c.center: None, c.action_msg: "", c.confirm_sign: gr.update(visible=False), c.confirm_n: None,
                c.worklist_msg: ""}

    def _refused(self, text: str) -> dict:
        """A refusal on the worklist: beside the upload and open controls, and in the page's status line."""
        return {self.c.status: note(text, ok=False), self.c.worklist_msg: note(text, ok=False)}

    def next_case(self, cid) -> Iterator[dict]:
        """The next study to do (the worklist's to-do order), other than this one; signed ones are done."""
        rows = worklist_table(self.service.store.worklist())
        todo = [r[0] for r in rows if r[1] != "signed" and r[0] != cid and r[0] in self.service.cases]
        if not todo:
            done = note("no other case is waiting: every other study is signed", ok=True)
            yield {self.c.action_msg: done, self.c.worklist_msg: done}
            return
        yield from self.open_queued(todo[0])

    def redraw(self, *view) -> dict:
        return self.view(*view) if view[0] else {}

    def redraw_keep_text(self, *view) -> dict:
        return self.view(*view, keep_text=True) if view[0] else {}

    def pan(self, *view_and_box, evt: gr.SelectData) -> dict:
        """A click on the radiograph centres the view there (at any zoom: zoom in, then click to move)."""
        *view, box = view_and_box
        if not view[0] or evt.index is None:
            return {}
        shown = self.service.full_image(view[0]).shape
        box = tuple(box or (0.0, 0.0, 1.0, 1.0))
        # The picture is drawn at the window's aspect; its pixel size follows viewer.viewport's display rule.
        ch, cw = max(1, round(shown[0] * box[2])), max(1, round(shown[1] * box[3]))
        center = click_to_center(box, display_shape(ch, cw), (float(evt.index[0]), float(evt.index[1])))
        view[-1] = center
        return {**self.view(*view, keep_text=True), self.c.center: center}

    def reset_view(self, cid, sent, reg, sup, cls) -> dict:
        c, d = self.c, DEFAULT_VIEW
        out = self.view(cid, sent, reg, sup, cls, d.opacity, d.zoom, d.level, d.width, d.invert, None,
                        keep_text=True) if cid else {}
        return {**out, c.opacity: d.opacity, c.zoom: d.zoom, c.level: d.level, c.width: d.width,
                c.invert: d.invert, c.center: None}

    def action(self, kind: str) -> Callable:
        c = self.c

        def act(cid, name, sent, reg, sup, cls, op, zm, lv, wd, inv, ctr, txt, rsn, links, override, confirm_n,
                request: gr.Request):
            view = (sup, cls, op, zm, lv, wd, inv, ctr)
            hide = gr.update(visible=False)
            if not cid:
                return {c.action_msg: note("open a case first", ok=False)}
            try:
                who = reviewer_name(name, request)
                idx = int(sent) if sent not in (None, "") else None
                msg = self._apply(cid, who, kind, idx, txt, links, rsn, override, confirm_n)
            except (UserError, ValueError, KeyError) as exc:
                check = getattr(exc, "check", None)  # db.reviews.UnreviewedError: offer the explicit confirmation
                if kind == "sign" and check is not None:
                    n = len(check.undecided)
                    return {c.action_msg: note(f"{message(exc)} — not signed.", ok=False), c.confirm_n: n,
                            c.confirm_sign: gr.update(visible=True, value=f"Sign with {n} unreviewed (Shift+S)")}
                return {c.action_msg: note(f"{message(exc)} — nothing was saved.", ok=False)}
            if kind == "delete":  # after an undo the selection stays, unless it undid the sentence's addition
                sent = None
            out = self.view(cid, sent, reg, *view)
            out[c.action_msg] = note(f"Saved at {dt.datetime.now().strftime('%H:%M:%S')}: {msg}", ok=True)
            return {**out, **self.worklist_outputs(), c.confirm_sign: hide, c.confirm_n: None}
        return act

    def _apply(self, cid, who, kind, idx, txt, links, rsn, override, confirm_n) -> str:
        if kind == "accept" and idx is None:
            raise UserError("select a sentence to accept (or press Accept all grounded)")
        if kind == "accept_all":
            kind, idx = "accept", None
        # An added sentence starts with no regions: it is grounded on its own words (review/regrounding.py), and
        # the reviewer links regions by hand with Re-link if they want others.
        regions = [] if kind == "add" else (links or [])
        unreviewed = confirm_n if kind == "sign_confirmed" else None
        kind = "sign" if kind == "sign_confirmed" else kind
        return self.service.apply(cid, who, kind, idx, txt, regions, rsn,
                                  override=bool(override) and kind in ("sign", "amend"), unreviewed=unreviewed)

    def do_upload(self, path) -> dict:
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
            return {**self._refused(f"upload refused: {message(exc)}"), c.upload: None}
        out = self.open_case(case.case_id)
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

    def do_fhir(self, case_id) -> dict:
        if not case_id:
            return {self.c.status: note("open a signed case first: its signed report is what is sent", ok=False)}
        try:
            report = self.service.signed_report_fhir(case_id)
        except (KeyError, ValueError) as exc:  # not signed yet, or FHIR refused it (db.fhir.FhirError, named)
            return {self.c.status: note(f"no FHIR report: {message(exc)}", ok=False)}
        path = os.path.join(tempfile.mkdtemp(prefix="gcxr-fhir-"), "DiagnosticReport-bundle.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(report, f, ensure_ascii=False, indent=1)
        return {self.c.fhir_file: path, self.c.status: note(f"signed report of {case_id} as FHIR R4", ok=True)}

    def pick_row(self, evt: gr.SelectData) -> Iterator[dict]:
        row = evt.row_value or []
        if not row:
            yield {}
            return
        yield from self.wait_for_analysis(row[0])
        yield {**self.open_case(row[0]), self.c.pick: row[0]}

    def use_model(self, version, force=False) -> dict:
        gate = self.service.gate_markdown(version)
        try:
            msg = self.service.switch_model(version, force=bool(force))
        except (ValueError, OSError) as exc:
            return {self.c.status: note(message(exc), ok=False), self.c.gate: gate}
        return {self.c.status: note(msg, ok=True), self.c.model_card: model_card_html(self.service.analyser),
                self.c.model_card_md: model_card_text(self.service.analyser),
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

    def sort_worklist(self, order) -> dict:
        return self.worklist_outputs(order)

    def on_page_load(self, request: gr.Request) -> dict:
        # A fresh page sees the current worklist (uploads and reviews since start-up). With --user logins the
        # reviewer is the logged-in name, not a free text field.
        c, user = self.c, getattr(request, "username", None)
        return {c.reviewer: gr.update(value=user, interactive=False) if user else gr.update(),
                c.pick: gr.update(choices=sorted(self.service.cases))}


def wire(c: Components, h: Handlers, demo: gr.Blocks) -> None:
    """Connect every component's events to its handler."""
    c.open_btn.click(h.open_queued, [c.pick], h.open_outputs, api_name="open_case")
    c.table.select(h.pick_row, None, h.open_outputs)
    for btn in (c.next_case, c.next_todo):
        btn.click(h.next_case, [c.case_id], h.open_outputs)
    c.sentence.input(h.redraw, h.view_inputs, h.view_outputs)
    c.region.input(h.redraw_keep_text, h.view_inputs, h.view_outputs)
    for ctl in h.view_controls:
        ctl.input(h.redraw_keep_text, h.view_inputs, h.view_outputs)
    c.overlay.select(h.pan, [*h.view_inputs, c.box], h.view_outputs + [c.center])
    c.reset_view.click(h.reset_view, [c.case_id, c.sentence, c.region, c.supers, c.classes],
                       h.view_outputs + [c.opacity, c.zoom, c.level, c.width, c.invert, c.center])
    act_inputs = [c.case_id, c.reviewer, c.sentence, c.region, *h.view_controls, c.center, c.text, c.reason,
                  c.relink, c.override, c.confirm_n]
    act_outputs = h.view_outputs + [c.action_msg, c.table, c.counts, c.confirm_sign, c.confirm_n]
    for kind, btn in c.actions.items():
        btn.click(h.action(kind), act_inputs, act_outputs)
    c.confirm_sign.click(h.action("sign_confirmed"), act_inputs, act_outputs)
    # Analyses (an upload, a case opened for the first time) share one queue of one (review/analysis_queue.py);
    # redraws of analysed cases never wait behind them.
    c.upload.upload(h.do_upload, [c.upload], h.open_outputs, concurrency_limit=4)
    c.order.input(h.sort_worklist, [c.order], [c.table, c.counts])
    c.refresh.click(h.sort_worklist, [c.order], [c.table, c.counts])
    c.b_export.click(h.do_export, None, [c.export_file, c.status])
    c.b_fhir.click(h.do_fhir, [c.case_id], [c.fhir_file, c.status], api_name="signed_report_file")
    c.b_model.click(h.use_model, [c.model_pick, c.model_force], [c.status, c.model_card, c.model_card_md, c.gate])
    c.b_ft.click(h.fine_tune, None, [c.status, c.model_pick, c.gate])
    c.b_ft_cancel.click(h.cancel_fine_tune, None, [c.status])
    demo.load(h.on_page_load, None, [c.reviewer, c.pick])
