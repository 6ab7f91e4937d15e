"""Sentence anatomy as CXAS names, with laterality."""
import pytest

from model.report.anatomy import sentence_anatomy
from model.taxonomy import is_valid_name


@pytest.mark.parametrize("text, expected", [
    ("Left lower lobe calcified granuloma.", ["lung lower lobe left"]),
    ("Blunting of the right costophrenic angle.", ["right lung base"]),
    ("The cardiac silhouette is enlarged.", ["heart"]),
    ("Retrocardiac opacity.", ["lung lower lobe left"]),
    ("Scarring in the left apex.", ["left apical zone lung"]),
    ("Bibasilar atelectasis.", ["left lung base", "right lung base"]),
    ("Left hemithorax opacification.", ["left lung"]),
    ("Opacity in the left lung.", ["left lung"]),
    ("Right middle lobe infiltrate.", ["lung middle lobe right"]),
    ("Right upper and lower lobe opacities.", ["lung upper lobe right", "lung lower lobe right"]),
    ("Opacity in the lingula.", ["lung upper lobe left"]),
    ("Biapical pleural thickening.", ["left apical zone lung", "right apical zone lung"]),
    ("Patchy opacity in the lung bases bilaterally.", ["left lung base", "right lung base"]),
    ("Opacity at the base on the left.", ["left lung base"]),
    ("Small left pleural effusion.", ["left lung base"]),
    ("Right-sided pneumothorax.", ["right lung"]),
    ("Elevated right hemidiaphragm.", ["right hemidiaphragm"]),
    ("Healed fracture of the posterior left 7th rib.", ["posterior 7th rib left"]),
    ("Fractures of the right anterior 5th through 7th ribs.",
     ["anterior 5th rib right", "anterior 6th rib right", "anterior 7th rib right"]),
    ("Compression deformity of T12.", ["vertebrae T12"]),
    ("Degenerative changes of the thoracic spine.", ["thoracic spine"]),
    ("Heart size and mediastinal contours are normal.", ["heart", "cardiomediastinum"]),
    ("Calcified aortic knob.", ["aortic arch"]),
    ("Tortuous aorta.", ["aorta"]),
    ("Lungs are clear.", ["lung"]),
    ("No pleural effusion or pneumothorax.", []),  # no side, no structure named: nothing to check against
    ("There are no XXXX of a pleural effusion.", []),
])
def test_mapping(text, expected):
    assert sentence_anatomy(text) == expected


def test_every_name_is_cxas():
    text = ("Right and left lower lobe atelectasis, left apical scarring, right mid lung nodule, trachea midline, "
            "carina, left clavicle, right scapula, sternotomy, stomach, left breast, right atrium, IVC, "
            "descending aorta, pulmonary arteries, left 12th rib, T5, cervical spine, lumbar spine.")
    names = sentence_anatomy(text)
    assert len(names) > 15
    assert all(is_valid_name(n) for n in names), [n for n in names if not is_valid_name(n)]


def test_bad_input_is_a_clear_error():
    with pytest.raises(TypeError, match="expects a str"):
        sentence_anatomy(3)
