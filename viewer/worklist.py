"""Worklist rows: one per study, sortable; "most ungrounded first" is the default triage order."""
from __future__ import annotations

from collections.abc import Iterable

from review.types import WorklistRow  # noqa: F401  (the row type lives with the review domain; rendered here)

HEADERS = ["case", "status", "model version", "ungrounded", "reviewer", "source", "model knows this film"]
OUTSIDE = "no: not a reading"  # the domain gate's answer, in the reviewer's words
ORDERS = {
    # films the model cannot read need every sentence reviewed: they come with the most ungrounded, never last
    "most ungrounded first": lambda r: (not r.out_of_domain, -r.n_ungrounded, r.case_id),
    "case": lambda r: (r.case_id,),
    "status": lambda r: (r.status, r.case_id),
    "reviewer": lambda r: (r.reviewer or "", r.case_id),
}


def worklist_table(rows: Iterable[WorklistRow], order: str = "most ungrounded first") -> list[list]:
    """Rows as table cells in the HEADERS column order, sorted by `order` (one of ORDERS)."""
    if order not in ORDERS:
        raise ValueError(f"unknown worklist order {order!r}; expected one of {sorted(ORDERS)}")
    rows = sorted(rows, key=ORDERS[order])
    return [[r.case_id, r.status, r.model_version, int(r.n_ungrounded), r.reviewer or "", r.source,
             OUTSIDE if r.out_of_domain else ("yes" if r.out_of_domain is False else "")] for r in rows]
