"""The gradio_client API (docs/app.md): `/generate`, `/correct`, `/worklist`; JSON in, JSON out, every refusal a
gr.Error naming the problem."""
from __future__ import annotations

import gradio as gr

from review.identity import IdentityError, session_reviewer
from review.service import ReviewService
from ui.handlers import message
from viewer.worklist import worklist_table


def register_api(service: ReviewService) -> None:
    """Declare the API endpoints inside the current gr.Blocks."""

    def generate(case_id: str) -> dict:
        """Analyse a case (cached) and return its report with per-sentence regions and verdicts, and the review."""
        try:
            return service.generate_payload(case_id)
        except (KeyError, ValueError) as exc:
            raise gr.Error(message(exc)) from None

    def correct(case_id: str, reviewer: str, kind: str, sentence_index: int | None = None, text: str = "",
                regions: list[str] | None = None, reason: str = "", override: bool = False,
                idempotency_key: str = "", confirm_unreviewed: int | None = None,
                request: gr.Request = None) -> dict:
        """Apply one correction (edit, delete, add, flag, relink, accept, undo, sign, amend); returns the
        review state after it. With login, `reviewer` must be empty or the logged-in user. `override` (sign /
        amend over another reviewer's signature) needs `text` as the note saying why. `idempotency_key`: a retry
        with the same key (e.g. after a lost reply) is not applied twice. `confirm_unreviewed` (sign): signing is
        refused while a sentence is undecided unless this equals the number of undecided sentences (the refusal
        names them). `review.final_report` leaves flagged sentences out; they are in `review.flagged_sentences`."""
        user = getattr(request, "username", None) if request is not None else None
        if not user and (not reviewer or not reviewer.strip()):
            raise gr.Error("reviewer is required: it is recorded on every correction")
        try:
            who = session_reviewer(reviewer, user)
            msg = service.apply(case_id, who, kind, sentence_index, text or None, regions or [], reason or None,
                                override=bool(override), key=idempotency_key or None,
                                unreviewed=None if confirm_unreviewed is None or confirm_unreviewed < 0
                                else int(confirm_unreviewed))
        except (ValueError, KeyError) as exc:  # IdentityError or the store's refusal, named; nothing was saved
            raise gr.Error(message(exc)) from None
        return {"message": msg, "review": service.state(case_id).to_dict()}

    def fhir(case_id: str) -> dict:
        """The case's newest signed report as an HL7 FHIR R4 Bundle (DiagnosticReport final / amended, the reviewer
        as performer, the drafting model as a Device through Provenance; docs/store.md, "FHIR")."""
        try:
            return service.signed_report_fhir(case_id)
        except (KeyError, ValueError) as exc:
            raise gr.Error(message(exc)) from None

    def worklist() -> list[list]:
        """The worklist rows, most ungrounded first: case, status, model version, ungrounded, reviewer, source."""
        return worklist_table(service.store.worklist())

    gr.api(generate, api_name="generate")
    gr.api(fhir, api_name="fhir")
    gr.api(correct, api_name="correct")
    gr.api(worklist, api_name="worklist")
