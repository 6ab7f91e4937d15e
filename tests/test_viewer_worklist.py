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
