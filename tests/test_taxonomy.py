from model import taxonomy as t


def test_159_classes_and_18_superclasses():
    assert len(t.CLASS_NAMES) == 159 and len(set(t.CLASS_NAMES)) == 159
    assert len(t.SUPERCLASSES) == 18
    assert all(m in t.CLASS_INDEX for members in t.SUPERCLASSES.values() for m in members)


def test_known_names_and_validation():
    for name in ("right lung", "left lung", "heart", "trachea", "left hemidiaphragm", "right lung base",
                 "left upper zone lung", "lung lower lobe left"):
        assert t.is_valid_name(name)
    assert t.is_valid_name("lung zones")
    try:
        t.validate_names(["heart", "left lungs"])
    except ValueError as e:
        assert "left lungs" in str(e)
    else:
        raise AssertionError("invalid name accepted")


def test_colours_stable_and_distinct_within_group():
    assert t.color("heart") == t.color("heart")
    zones = t.SUPERCLASSES["lung zones"]
    assert len({t.color(z) for z in zones}) == len(zones)
    assert all(0 <= c <= 255 for c in t.color("left lung"))
