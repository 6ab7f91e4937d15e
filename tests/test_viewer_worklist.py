import pytest

from viewer.worklist import HEADERS, WorklistRow, worklist_table


def _rows():
    return [WorklistRow("b", "signed", "v1", 0, "ann", "phantom"), WorklistRow("a", "new", "v1", 3, None, "upload"),
            WorklistRow("c", "in review", "v2", 5, "bob", "IU X-ray")]


def test_most_ungrounded_first_is_default():
    t = worklist_table(_rows())
    assert [r[0] for r in t] == ["c", "a", "b"]
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
    assert {r[0]: r[-1] for r in t[1:]} == {"y": "yes", "a": "", "b": "", "c": ""}  # not analysed: not known
