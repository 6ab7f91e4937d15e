"""Review-store throughput: N corrections written by W concurrent writer processes (none may be lost), then the
export of the signed reviews (full, then incremental with nothing new).

    python benchmarks/bench_db.py                         # 10,000 corrections, 8 writers, SQLite in a temp folder
    python benchmarks/bench_db.py --url postgresql+psycopg2://user@/groundcxr_bench --corrections 2000

Each writer owns its share of the reviews (as reviewers do) and cycles through the correction kinds (add, edit,
flag, relink, accept, delete, undo); every review is signed at the end. Exits 1 if a correction is missing or
duplicated. Prints one JSON line with the figures (docs/store.md quotes it).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from db.store import Store  # noqa: E402

N_SENTENCES = 6


def _output() -> dict:
    sentences = [{"index": i, "text": f"Model sentence {i}.", "regions": [{"name": "heart", "score": 0.5}],
                  "verdict": ("grounded", "weak", "ungrounded")[i % 3]} for i in range(N_SENTENCES)]
    return {"report": " ".join(s["text"] for s in sentences), "sentences": sentences, "model_version": "bench"}


def _writer(url: str, name: str, review_ids: list[int], per_review: int, barrier, queue) -> None:
    store = Store(url)
    barrier.wait()  # every writer is imported and connected: the clock starts for all at once
    t0, written = time.perf_counter(), 0
    for rid in review_ids:
        for i in range(per_review):
            step = i % 7
            if step == 0:
                store.apply_correction(rid, "add", name, text=f"{name} added {rid}/{i}.")
            elif step == 1:
                store.apply_correction(rid, "edit", name, sentence_index=i % N_SENTENCES, text=f"{name} {rid}/{i}.")
            elif step == 2:
                store.apply_correction(rid, "flag", name, sentence_index=(i + 1) % N_SENTENCES,
                                       reason_code="wrong_location", text=f"note {i}")
            elif step == 3:
                store.apply_correction(rid, "relink", name, sentence_index=(i + 2) % N_SENTENCES,
                                       regions=["left lung", "heart"])
            elif step == 4:
                store.apply_correction(rid, "accept", name, sentence_index=(i + 3) % N_SENTENCES)
            elif step == 5:
                store.apply_correction(rid, "add", name, text=f"{name} extra {rid}/{i}.")
            else:
                store.undo_last(rid, name)  # reverts the "extra" add just made
            written += 1
        store.sign(rid, name)
    queue.put((name, written, time.perf_counter() - t0))
    store.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", help="SQLAlchemy URL (default: a fresh SQLite file in a temp folder)")
    ap.add_argument("--corrections", type=int, default=10_000)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--per-review", type=int, default=50, help="corrections per review (default %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the temp folder (database and export)")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-db-")
    url = args.url or f"sqlite:///{os.path.join(tmp, 'bench.db')}"
    n_reviews = args.corrections // args.per_review
    if n_reviews % args.writers or args.corrections % args.per_review:
        ap.error(f"{args.corrections} corrections in reviews of {args.per_review} must split evenly over "
                 f"{args.writers} writers ({n_reviews} reviews)")

    store = Store(url)
    base = store.counts()["corrections"]
    t0 = time.perf_counter()
    review_ids = []
    for k in range(n_reviews):
        sid = store.register_study(f"B-{os.getpid()}-{k}", "bench")
        store.add_generation(sid, "bench", _output())
        review_ids.append(store.start_review(sid, "setup"))
    setup_s = time.perf_counter() - t0

    ctx = mp.get_context("spawn")  # fresh interpreters: no engine or connection shared across a fork
    queue, barrier = ctx.Queue(), ctx.Barrier(args.writers + 1)
    share = n_reviews // args.writers
    procs = [ctx.Process(target=_writer, args=(url, f"w{w}", review_ids[w * share:(w + 1) * share],
                                               args.per_review, barrier, queue)) for w in range(args.writers)]
    for p in procs:
        p.start()
    barrier.wait(timeout=300)
    start = time.perf_counter()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    reports = [queue.get() for _ in procs]
    failed = [p.exitcode for p in procs if p.exitcode != 0]

    counts = store.counts()
    written = counts["corrections"] - base - n_reviews  # minus one sign per review
    per_writer = {name: n for name, n, _ in reports}
    ok = not failed and written == args.corrections == sum(per_writer.values())
    for rid in review_ids[:: max(1, n_reviews // 20)]:  # spot-check: each review's trail is complete and ordered
        trail = store.corrections(rid)
        ok &= len(trail) == args.per_review + 1 and trail[-1].kind == "sign"
        ok &= [c.id for c in trail] == sorted(c.id for c in trail)

    from db.export import export
    out = os.path.join(tmp, "export")
    t1 = time.perf_counter()
    full = export(store, out, full=True)
    export_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    again = export(store, out)
    noop_s = time.perf_counter() - t2
    ok &= full.n_entries >= n_reviews and not again.written
    store.close()
    result = {"backend": url.split(":")[0], "writers": args.writers, "corrections": args.corrections,
              "written": written, "lost_or_duplicated": args.corrections - written, "writer_failures": failed,
              "setup_s": round(setup_s, 2), "write_wall_s": round(wall, 2),
              "corrections_per_s": round(written / wall, 1),
              "export_full_s": round(export_s, 2), "export_studies": full.n_entries, "export_pairs": full.n_pairs,
              "export_studies_per_s": round(full.n_entries / export_s, 1), "export_noop_s": round(noop_s, 3),
              "cpus": os.cpu_count(), "ok": bool(ok)}
    print(json.dumps(result))
    if args.keep:
        print(f"kept {tmp}", file=sys.stderr)
    else:
        shutil.rmtree(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
