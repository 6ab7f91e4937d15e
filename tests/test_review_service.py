"""The review package's own seams: bounded SQL per opened case, and the fine-tune job's typed progress."""
import contextlib

import pytest
from sqlalchemy import event

from app_fakes import make_service
from ui.screen import ViewSettings, case_view

SETTINGS = ViewSettings([], [], 0.4, 1.0)


@contextlib.contextmanager
def _statements(store):
    seen = []

    def count(conn, cursor, statement, *args):
        seen.append(statement)

    engine = store.db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _queries_to_redraw(tmp_path, n_cases):
    service = make_service(str(tmp_path), n_cases=n_cases)
    for cid in service.cases:
        case_view(service, cid, None, None, SETTINGS)
    service.store.correct("demo-0", "dr.a", "edit", index=0, text="The heart is enlarged.")
    with _statements(service.store) as first:
        case_view(service, "demo-0", 0, None, SETTINGS)
    return [s for s in first if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA"))]


def test_opening_a_reviewed_case_reads_only_that_study(tmp_path):
    few = _queries_to_redraw(tmp_path / "few", 2)
    many = _queries_to_redraw(tmp_path / "many", 12)
    assert len(few) <= 2, few  # generation + review in one statement, then the trail (measured: 2)
    assert len(many) == len(few)  # no worklist scan: the count does not grow with the studies
    assert not any("GROUP BY" in s.upper() for s in few)


def test_first_open_stores_the_report_in_a_bounded_number_of_statements(tmp_path):
    service = make_service(str(tmp_path), n_cases=8)
    with _statements(service.store) as seen:
        case_view(service, "demo-3", None, None, SETTINGS)
    work = [s for s in seen if not s.startswith(("BEGIN", "COMMIT", "ROLLBACK", "PRAGMA"))]
    assert 0 < len(work) <= 12, work  # measured: 10 (look-ups, the generation insert, the re-read)


def test_state_of_an_unknown_case_names_it(tmp_path):
    service = make_service(str(tmp_path))
    with pytest.raises(KeyError, match="no report yet"):
        service.store.state("demo-1")  # registered, never opened
    with pytest.raises(ValueError, match="no study 'nope'"):
        service.store.state("nope")
