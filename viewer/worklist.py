"""Worklist rows: one per study, sortable. The default, "to do first", puts every unsigned study before the signed
ones; among the unsigned, films the model cannot read first, then the most ungrounded, then studies not analysed
yet (their count is unknown, not 0)."""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from review.types import WorklistRow  # noqa: F401  (the row type lives with the review domain; rendered here)

HEADERS = ["case", "status", "model version", "ungrounded", "reviewer", "source", "model knows this film"]
OUTSIDE = "no: not a reading"  # the domain gate's answer, in the reviewer's words
NOT_ANALYSED = "not analysed"
DONE = ("signed",)  # statuses with nothing left to do; an amended report is open again
STATUS_ORDER = (NOT_ANALYSED, "new", "in_review", "amended", "signed")


def status_of(r: WorklistRow) -> str:
    """The row's status in the reviewer's words: a study with no report yet is "not analysed", not "new"."""
    return NOT_ANALYSED if not r.model_version else r.status


def _to_do_first(r: WorklistRow) -> tuple:
    analysed = bool(r.model_version)
    return (r.status in DONE, not analysed, not r.out_of_domain, -r.n_ungrounded, r.case_id)


ORDERS = {
    # films the model cannot read need every sentence reviewed: they come with the most ungrounded, never last
    "most ungrounded first": _to_do_first,
    "case": lambda r: (r.case_id,),
    "status": lambda r: (status_of(r), r.case_id),
    "reviewer": lambda r: (r.reviewer or "", r.case_id),
}


def worklist_table(rows: Iterable[WorklistRow], order: str = "most ungrounded first") -> list[list]:
    """Rows as table cells in the HEADERS column order, sorted by `order` (one of ORDERS). A study not analysed
    yet shows "not analysed" as its status and nothing as its ungrounded count."""
    if order not in ORDERS:
        raise ValueError(f"unknown worklist order {order!r}; expected one of {sorted(ORDERS)}")
    rows = sorted(rows, key=ORDERS[order])
    return [[r.case_id, status_of(r), r.model_version, int(r.n_ungrounded) if r.model_version else "",
             r.reviewer or "", r.source,
             OUTSIDE if r.out_of_domain else ("yes" if r.out_of_domain is False else "")] for r in rows]


def status_counts(rows: Iterable[WorklistRow]) -> str:
    """"not analysed 3 · new 1 · in_review 2 · signed 1": how many studies are in each status (those with any)."""
    n = Counter(status_of(r) for r in rows)
    known = [s for s in STATUS_ORDER if n[s]] + sorted(s for s in n if s not in STATUS_ORDER)
    return " · ".join(f"{s} {n[s]}" for s in known) or "no studies"
