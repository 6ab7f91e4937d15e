"""Shared fixtures of the db tests: a fresh store on SQLite and on PostgreSQL (a throw-away server started by the
`pg_server` fixture in conftest.py, or GROUNDCXR_TEST_PG_URL when set)."""
import pytest

BACKENDS = ["sqlite", "postgresql"]


def fresh_url(backend: str, tmp_path, pg_url: str | None = None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'review.db'}"
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    if "test" not in (make_url(pg_url).database or ""):
        pytest.fail(f"GROUNDCXR_TEST_PG_URL must name a throw-away database with 'test' in its name (each test "
                    f"drops its schema), got {make_url(pg_url).database!r}")
    engine = create_engine(pg_url)
    with engine.begin() as conn:  # a clean schema per test: this database is for tests only
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return pg_url


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    pg_url = request.getfixturevalue("pg_server") if request.param == "postgresql" else None
    return fresh_url(request.param, tmp_path, pg_url)


@pytest.fixture
def store(db_url):
    from db.store import Store
    s = Store(db_url)
    yield s
    s.close()


def model_output(n_sentences: int = 3, ungrounded: tuple[int, ...] = (1,)) -> dict:
    """A ReportOutput.to_dict() as the generator writes it."""
    texts = ["The heart is normal in size.", "There is a left pleural effusion.", "No pneumothorax.",
             "The mediastinum is unremarkable.", "Mild basal atelectasis."]
    sentences = [{"index": i, "text": texts[i % len(texts)], "token_span": [i * 8, i * 8 + 8],
                  "regions": [{"name": "heart", "score": 0.8}, {"name": "left lung", "score": 0.3}],
                  "verdict": "ungrounded" if i in ungrounded else "grounded", "reasons": [], "labels": {},
                  "anatomy": []} for i in range(n_sentences)]
    return {"report": " ".join(s["text"] for s in sentences), "sentences": sentences, "model_version": "m1",
            "timings": {"generate_s": 0.5}, "grounding_method": "attention"}


def study_with_generation(store, pseudo_id: str = "S-1", n_sentences: int = 3, ungrounded=(1,),
                          images=()) -> tuple[int, int]:
    sid = store.register_study(pseudo_id, "test", list(images))
    gid = store.add_generation(sid, "m1", model_output(n_sentences, ungrounded))
    return sid, gid


def write_png(path, seed: int) -> str:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(path)
    return str(path)


def sign_as_is(store, review_id, reviewer, **kwargs):
    """Sign, confirming whatever is still undecided: for tests about something other than the sign safeguard
    (tests/test_review_workflow.py is about that)."""
    return store.sign(review_id, reviewer, unreviewed=len(store.sign_check(review_id).undecided), **kwargs)
