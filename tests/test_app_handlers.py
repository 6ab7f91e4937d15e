"""The app's backend and view rendering with test doubles (no browser)."""
import numpy as np
import pytest

from app import Backend, ViewSettings, build_app, render_view
from app_fakes import FakeAnalyser, MemoryStore, make_cases
from model.imageio import ImageReadError


@pytest.fixture
def backend(tmp_path):
    return Backend(FakeAnalyser(), MemoryStore(), make_cases(str(tmp_path)), data_dir=str(tmp_path / "data"))


def test_open_is_cached(backend):
    image, analysis = backend.open("demo-0")
    assert image.shape == (128, 128) and backend.analyser.calls == 1
    again = backend.open("demo-0")
    assert again[1] is analysis and backend.analyser.calls == 1
    assert backend.store.has_generation("demo-0")


def test_unknown_case_names_it(backend):
    with pytest.raises(KeyError, match="nope"):
        backend.open("nope")


def test_render_view_highlights_selected_sentence_regions(backend):
    image, analysis = backend.open("demo-0")
    state = backend.store.state("demo-0")
    plain = render_view(image, analysis, state, None, None, ViewSettings([], [], 0.4, 1.0))
    sel = render_view(image, analysis, state, 0, None, ViewSettings([], [], 0.4, 1.0))
    heart = analysis.segmentation.masks["heart"]
    assert not np.array_equal(plain["overlay"][heart], sel["overlay"][heart])
    assert np.array_equal(plain["overlay"][~heart], sel["overlay"][~heart])
    assert plain["heatmap"] is None and sel["heatmap"].shape[0] == 128
    assert "<b>heart</b>" in sel["legend"]
    by_region = render_view(image, analysis, state, None, "right lung", ViewSettings([], [], 0.4, 1.0))
    assert "No focal consolidation" in by_region["in_region"] and "heart is normal" not in by_region["in_region"]


def test_upload_keeps_only_pixels_with_pseudonymous_id(backend, tmp_path):
    import io
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64).reshape(64, 64) % 251).astype(np.uint8)).save(buf, format="PNG")
    case = backend.upload(buf.getvalue(), "Smith_John_1950.png")
    assert case.case_id.startswith("upload-") and "Smith" not in case.case_id
    assert "Smith" not in case.image_path
    assert backend.upload(buf.getvalue(), "other.png").case_id == case.case_id
    with pytest.raises(ImageReadError):
        backend.upload(b"not an image", "x.png")


def test_build_app_exposes_api(backend):
    demo = build_app(backend)
    names = {d.api_name for d in demo.fns.values()}
    assert {"generate", "correct", "worklist"} <= names
