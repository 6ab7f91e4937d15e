import pytest

from viewer.worklist import HEADERS, WorklistRow, worklist_table


def _rows():
    return [WorklistRow("b", "signed", "v1", 0, "ann", "phantom"), WorklistRow("a", "new", "v1", 3, None, "upload"),
            WorklistRow("c", "in review", "v2", 5, "bob", "IU X-ray")]


def test_most_ungrounded_first_is_default():
    t = worklist_table(_rows())
    assert [r[0] for r in t] == ["c", "a", "b"]  # b is signed: after every unsigned study
    assert len(t[0]) == len(HEADERS) and t[1][4] == ""


def test_other_orders():
    assert [r[0] for r in worklist_table(_rows(), "case")] == ["a", "b", "c"]
    assert [r[1] for r in worklist_table(_rows(), "status")] == ["in review", "new", "signed"]
    with pytest.raises(ValueError, match="unknown worklist order"):
        worklist_table(_rows(), "random")


def test_films_outside_the_models_domain_come_first_and_are_marked():
    rows = _rows() + [WorklistRow("z", "generated", "v1", 0, None, "upload", out_of_domain=True),
                      WorklistRow("y", "generated", "v1", 0, None, "upload", out_of_domain=False)]
    t = worklist_table(rows)
    assert t[0][0] == "z" and t[0][-1].startswith("no")
    assert {r[0]: r[-1] for r in t[1:]} == {"y": "yes", "a": "", "b": "", "c": ""}  # gate's answer unknown


def test_unsigned_before_signed_and_not_analysed_says_so_instead_of_zero():
    from viewer.worklist import status_counts
    rows = [WorklistRow("s", "signed", "v1", 9, "ann"), WorklistRow("n", "new", "", 0),
            WorklistRow("m", "amended", "v1", 1, "bob"), WorklistRow("o", "new", "v1", 0, out_of_domain=True),
            WorklistRow("u", "in_review", "v1", 4, "ann")]
    t = worklist_table(rows)
    assert [r[0] for r in t] == ["o", "u", "m", "n", "s"]
    assert t[3][1] == "not analysed" and t[3][3] == ""
    assert status_counts(rows) == "not analysed 1 · new 1 · in_review 1 · amended 1 · signed 1"
