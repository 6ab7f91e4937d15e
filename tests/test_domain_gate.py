"""The domain gate (model/s2d/domain.py) and what grounding does outside it: every sentence `unverified`."""
import numpy as np
import pytest

from model.grounding.verdict import Judgement, unverified
from model.s2d.domain import DomainGate
from model.types import VERDICTS, RegionScore, ReportOutput, Sentence


def _films(n, shift=0.0, seed=0, d=8):
    return np.random.default_rng(seed).normal(shift, 1.0, (n, d))


def test_about_99_percent_of_in_domain_films_are_inside_and_shifted_films_are_not():
    gate = DomainGate.fit(_films(2000), _films(500, seed=1))
    inside = np.mean([v.inside for v in gate.judge(_films(2000, seed=2))])
    assert 0.97 <= inside <= 1.0
    assert not any(v.inside for v in gate.judge(_films(50, shift=3.0, seed=3)))


def test_save_load_round_trip(tmp_path):
    gate = DomainGate.fit(_films(300), _films(100, seed=1), {"data": "x"})
    gate.save(str(tmp_path))
    back = DomainGate.load(str(tmp_path))
    probe = _films(5, seed=4)
    np.testing.assert_allclose(back.scores(probe), gate.scores(probe), rtol=1e-4)
    assert back.limit == pytest.approx(gate.limit, abs=1e-3) and back.info["data"] == "x"
    assert DomainGate.load(str(tmp_path / "none")) is None


def test_a_fine_tuned_gate_pools_the_parent_with_its_new_films():
    parent = DomainGate.fit(_films(1000), _films(200, seed=1))
    new = _films(200, shift=2.5, seed=5)
    assert np.mean([v.inside for v in parent.judge(new)]) < 0.2
    child = parent.merge(new, {"fine_tuned_on": "export"})
    assert np.mean([v.inside for v in child.judge(new)]) >= 0.95
    assert child.info["n_train"] == 1200 and child.limit >= parent.limit
    assert np.mean([v.inside for v in child.judge(_films(500, seed=6))]) >= 0.95  # the parent's films still inside


def test_too_few_films_is_a_clear_error():
    with pytest.raises(ValueError, match="training and validation films"):
        DomainGate.fit(_films(1), _films(0))


def test_outside_the_domain_nothing_is_vouched_for():
    j = Judgement("grounded", ["supported by heart (0.91)"], 0.1, [RegionScore("heart", 0.91)], 0.91)
    u = unverified(j, {"score": 41.2, "limit": 12.0, "inside": False})
    assert u.verdict == "unverified" and "unverified" in VERDICTS
    assert "not trained on films like this one" in u.reasons[0] and "41.2" in u.reasons[0]
    assert u.regions == j.regions and u.score == j.score


def test_report_output_carries_the_domain_through_json():
    r = ReportOutput(report="x.", sentences=[Sentence(0, "x.")], domain={"score": 3.0, "limit": 2.0, "inside": False})
    back = ReportOutput.from_dict(r.to_dict())
    assert back.domain == r.domain and back.out_of_domain
    assert not ReportOutput(report="", sentences=[]).out_of_domain
