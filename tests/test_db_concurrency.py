"""Two writers at once — threads sharing a store, and separate processes — lose nothing and duplicate nothing."""
import subprocess
import sys
import threading
import time

from _db_support import sign_as_is, db_url, store, study_with_generation  # noqa: F401
from conftest import ROOT

from db.store import Store

# Each process waits for the same start instant, so that their start-up migrations and writes really overlap.
WORKER = """
import sys, time
from db.store import Store
url, name, start, n, mode = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
while time.time() < start:
    time.sleep(0.005)
store = Store(url)
if mode == "register":
    for i in range(n):
        store.register_study(f"S-shared-{i}", "test")
        store.register_study(f"S-{name}-{i}", "test")
    store.register_model("shared-model")
else:
    rid = int(mode)
    for i in range(n):
        store.apply_correction(rid, "add", name, text=f"{name} sentence {i}.")
store.close()
print("done", name)
"""


def _run_processes(url: str, n_procs: int, n: int, mode: str) -> None:
    start = time.time() + 2.5  # enough for every interpreter to import sqlalchemy first
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, f"p{k}", str(start), str(n), mode], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(n_procs)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]


def test_processes_starting_on_a_fresh_database_migrate_once_and_register_without_duplicates(db_url):
    _run_processes(db_url, n_procs=3, n=6, mode="register")
    store = Store(db_url)
    counts = store.counts()
    assert counts["studies"] == 6 + 3 * 6, counts  # shared ids once, each process's own ids
    assert counts["model_versions"] == 1
    store.close()


def test_processes_appending_to_one_review_lose_nothing(store, db_url):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    _run_processes(db_url, n_procs=3, n=30, mode=str(rid))
    texts = [c.text for c in store.corrections(rid)]
    assert len(texts) == 90 and len(set(texts)) == 90
    indices = [s.index for s in store.final_report(rid) if s.origin == "reviewer"]
    assert sorted(indices) == list(range(3, 93)), "added sentences must get distinct indices"
    assert store.review(rid).status == "in_review"


def test_threads_sharing_a_store_lose_nothing(store):
    sid, _ = study_with_generation(store)
    other, _ = study_with_generation(store, "S-2")
    rid = store.start_review(sid, "dr.a")
    review_ids, errors = [], []
    barrier = threading.Barrier(6)

    def work(k: int) -> None:
        try:
            barrier.wait()
            review_ids.append(store.start_review(other, f"dr.{k}"))  # six reviewers open the same study at once
            for i in range(20):
                store.apply_correction(rid, "add", f"dr.{k}", text=f"t{k}-{i}")
            store.register_study("S-threads", "test")
        except Exception as exc:  # collected: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(set(review_ids)) == 1, "concurrent start_review forked the review"
    assert len({c.text for c in store.corrections(rid)}) == 120
    assert store.counts()["reviews"] == 2 and store.counts()["studies"] == 3


def test_undo_and_sign_race_leaves_a_consistent_trail(store):
    sid, _ = study_with_generation(store)
    rid = store.start_review(sid, "dr.a")
    for i in range(10):
        store.apply_correction(rid, "add", "dr.a", text=f"s{i}.")
    results = []

    def undo():
        for _ in range(10):
            try:
                store.undo_last(rid, "dr.a")
                results.append("undo")
            except Exception as exc:
                results.append(str(exc))

    def sign():
        try:
            sign_as_is(store, rid, "dr.b")
            results.append("sign")
        except Exception as exc:
            results.append(str(exc))

    threads = [threading.Thread(target=undo), threading.Thread(target=sign)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    trail = store.corrections(rid)
    sign_at = [n for n, c in enumerate(trail) if c.kind == "sign"]
    assert len(sign_at) == 1 and results.count("sign") == 1
    assert all(c.kind != "revert" for c in trail[sign_at[0]:]), "an undo slipped past the signature"
    assert results.count("undo") == sum(c.kind == "revert" for c in trail)
    assert [m for m in results if m not in ("undo", "sign")] == [
        f"review {rid} is signed; amend it first (amend) to change it"] * (10 - results.count("undo"))
