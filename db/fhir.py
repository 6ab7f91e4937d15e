"""A signed report as HL7 FHIR R4 (4.0.1): a `collection` Bundle around one DiagnosticReport (docs/store.md, "FHIR").

Why a Bundle and not a bare DiagnosticReport: R4's `DiagnosticReport.performer` may name a Practitioner but not a
Device, and the issue is to say both who signed and which model drafted the text. FHIR's place for "who did what to
this resource" is Provenance, whose agents may be Devices; so the Bundle holds

    DiagnosticReport  status final (first signature) | amended (re-signed after an amendment), conclusion = the
                      signed report (flagged and deleted sentences left out, as in the export), the reviewer as
                      performer and resultsInterpreter, issued = the sign time
    Practitioner      the reviewer, by the name they sign with
    Device            the model version that drafted the report
    Provenance        target the report; agents: the Device as author (it drafted), the reviewer as verifier

No Patient: the store keeps pseudonymous study ids only, so the report carries the study id as an identifier for the
receiving system to link, and `subject` is left out (optional in R4). Ids and fullUrls are derived from the review and
its sign event, so exporting twice writes the same bytes.

Every Bundle is validated with SMART on FHIR's R4 models (`fhirclient`, Apache-2.0) before it leaves: wrong types,
unknown elements and missing required elements are refused there, not by the receiver.
"""
from __future__ import annotations

import base64
import datetime as dt
import html
import re
import uuid
from typing import Any

from db.records import SignedReport
from db.replay import report_text

FHIR_VERSION = "4.0.1"
_NS = uuid.UUID("8f0c5a52-61b6-4d1e-9a4f-7d2f0c7b9e31")  # GroundCXR's namespace for deterministic ids
SYSTEM = "urn:groundcxr"
# LOINC 18748-4 "Diagnostic imaging study": the document code US Core's DiagnosticReport for imaging examples use.
CODE = {"coding": [{"system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study"}],
        "text": "Chest radiograph report"}
CATEGORY = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD",
                         "display": "Radiology"}]}]
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
# Required bindings the generated models do not enforce (they check types, not code lists): R4's value sets.
_REQUIRED_CODES = {
    ("DiagnosticReport", "status"): {"registered", "partial", "preliminary", "final", "amended", "corrected",
                                     "appended", "cancelled", "entered-in-error", "unknown"},
    ("Bundle", "type"): {"document", "message", "transaction", "transaction-response", "batch", "batch-response",
                         "history", "searchset", "collection"},
}


class FhirError(ValueError):
    """The Bundle did not validate against FHIR R4; the message names the element."""


def _urn(r: SignedReport, what: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{r.review_id}/{r.sign_id}/{what}')}"


def _instant(when: dt.datetime | None) -> str:
    when = when or dt.datetime(1970, 1, 1)
    if when.tzinfo is None:  # the store keeps naive UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def status(r: SignedReport) -> str:
    return "final" if r.signature <= 1 else "amended"


def _narrative(r: SignedReport, conclusion: str) -> dict[str, str]:
    body = html.escape(conclusion) if conclusion else "<i>No sentence was kept.</i>"
    return {"status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p><b>Chest radiograph report</b> '
                   f'({html.escape(status(r))}), signed by {html.escape(r.reviewer)}; drafted by the model '
                   f'{html.escape(r.model_version)}.</p><p>{body}</p></div>'}


def diagnostic_report(r: SignedReport) -> dict[str, Any]:
    conclusion = report_text(r.sentences, drop_flagged=True)
    issued = _instant(r.signed_at)
    reviewer = {"reference": _urn(r, "practitioner"), "type": "Practitioner", "display": r.reviewer}
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": f"review-{r.review_id}-sign-{r.sign_id}",
        "text": _narrative(r, conclusion),
        "identifier": [{"system": f"{SYSTEM}:study", "value": r.study},
                       {"system": f"{SYSTEM}:signature", "value": f"{r.review_id}.{r.sign_id}"}],
        "status": status(r), "category": CATEGORY, "code": CODE, "issued": issued,
        "performer": [reviewer], "resultsInterpreter": [reviewer],
    }
    if conclusion:
        report["conclusion"] = conclusion
        report["presentedForm"] = [{"contentType": "text/plain; charset=utf-8", "language": "en",
                                    "data": base64.b64encode(conclusion.encode("utf-8")).decode("ascii"),
                                    "title": "Signed report", "creation": issued}]
    return report


def bundle(r: SignedReport) -> dict[str, Any]:
    """The signed report as a validated FHIR R4 collection Bundle (a plain JSON-ready dict)."""
    report = diagnostic_report(r)
    practitioner = {"resourceType": "Practitioner", "id": f"reviewer-{r.review_id}-{r.sign_id}",
                    "identifier": [{"system": f"{SYSTEM}:reviewer", "value": r.reviewer}],
                    "name": [{"text": r.reviewer}]}
    device = {"resourceType": "Device", "id": f"model-{r.review_id}-{r.sign_id}",
              "deviceName": [{"name": r.model_version, "type": "model-name"}],
              "type": {"text": "AI model that drafts chest radiograph reports (S2D-ALIGN, GroundCXR)"},
              "version": [{"value": r.model_version}]}
    provenance = {"resourceType": "Provenance", "id": f"provenance-{r.review_id}-{r.sign_id}",
                  "target": [{"reference": _urn(r, "report")}], "recorded": report["issued"],
                  "agent": [{"type": {"coding": [{"system": _PARTICIPANT, "code": "author", "display": "Author"}]},
                             "who": {"reference": _urn(r, "device"), "type": "Device", "display": r.model_version}},
                            {"type": {"coding": [{"system": _PARTICIPANT, "code": "verifier",
                                                  "display": "Verifier"}]},
                             "who": {"reference": _urn(r, "practitioner"), "type": "Practitioner",
                                     "display": r.reviewer}}]}
    out = {"resourceType": "Bundle", "id": f"groundcxr-{r.review_id}-{r.sign_id}", "type": "collection",
           "timestamp": report["issued"],
           "entry": [{"fullUrl": _urn(r, what), "resource": res} for what, res in
                     (("report", report), ("practitioner", practitioner), ("device", device),
                      ("provenance", provenance))]}
    validate(out)
    return out


def validate(resource: dict[str, Any]) -> None:
    """Raise FhirError unless `resource` is valid FHIR R4 as SMART's generated models read it (every entry of a
    Bundle by its own resource type)."""
    from fhirclient.models.fhirabstractbase import FHIRValidationError
    from fhirclient.models.fhirelementfactory import FHIRElementFactory

    resources = [resource] + [e.get("resource") for e in resource.get("entry", []) if isinstance(e, dict)]
    for res in resources:
        if not isinstance(res, dict) or not res.get("resourceType"):
            raise FhirError("a Bundle entry has no resource with a resourceType")
        try:
            parsed = FHIRElementFactory.instantiate(res["resourceType"], res)
        except FHIRValidationError as exc:
            why = re.sub(r" object at 0x[0-9a-f]+", "", " ".join(str(exc).split()))
            raise FhirError(f"{res['resourceType']} is not valid FHIR R4: {why}") from None
        if parsed.__class__.__name__ != res["resourceType"]:
            raise FhirError(f"{res['resourceType']} is not a FHIR R4 resource type")
        for (kind, element), allowed in _REQUIRED_CODES.items():
            if res["resourceType"] == kind and res.get(element) not in allowed:
                raise FhirError(f"{kind}.{element} {res.get(element)!r} is not one of R4's codes")
