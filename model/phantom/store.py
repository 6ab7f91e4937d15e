"""Phantom storage: one PNG + one .npz per case, and an R2Gen-layout dataset (annotation.json) written in parallel.

Layout of a dataset directory:
    annotation.json      {"train": [entry, ...], "val": [...], "test": [...]}
    images/<id>.png      uint8 grayscale
    masks/<id>.npz       anatomy masks under CXAS names, pathology masks under "finding/<finding id>"
Every file is written to a temporary name in its own directory and renamed into place, so a crash leaves either
the old file or the new one, never half a file.
"""
from __future__ import annotations

import os
import zipfile
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from model import taxonomy
from model.atomic import atomic_path, atomic_write_bytes, atomic_write_json

from .generate import PhantomCase, check_knobs, generate_case

FINDING_PREFIX = "finding/"
SPLITS = ("train", "val", "test")


def save_masks(path: str, anatomy: dict, findings: dict) -> None:
    """Write anatomy (CXAS name -> bool HxW) and findings (finding id -> bool HxW) masks to one compressed .npz."""
    taxonomy.validate_names(anatomy)
    arrays = {name: np.asarray(m, bool) for name, m in anatomy.items()}
    arrays.update({FINDING_PREFIX + fid: np.asarray(m, bool) for fid, m in findings.items()})
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) > 1:
        raise ValueError(f"masks of one case must share a shape; got {sorted(shapes)}")
    # a standard .npz (np.load reads it) at deflate level 1: masks are sparse, and level 6 was the
    # dataset writer's single largest cost (~55 ms a case) for files only ~10% smaller
    with atomic_path(path, ".npz") as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as member:
                np.lib.format.write_array(member, arr, allow_pickle=False)


def load_masks(path: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(anatomy: CXAS name -> bool HxW, findings: finding id -> bool HxW) from a phantom .npz."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mask file not found: {path}")
    anatomy, findings = {}, {}
    with np.load(path, allow_pickle=False) as data:
        for key in data.files:
            if key.startswith(FINDING_PREFIX):
                findings[key[len(FINDING_PREFIX):]] = data[key].astype(bool)
            elif taxonomy.is_valid_name(key):
                anatomy[key] = data[key].astype(bool)
            else:
                raise ValueError(f"{path}: key {key!r} is neither a CXAS name nor '{FINDING_PREFIX}<id>'")
    return anatomy, findings


def write_case(case: PhantomCase, out_dir: str, split: str | None = None) -> dict:
    """Write a case's PNG and masks under out_dir; returns its annotation entry (paths relative to out_dir)."""
    image_rel, masks_rel = f"images/{case.id}.png", f"masks/{case.id}.npz"
    ok, png = cv2.imencode(".png", case.image)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for case {case.id}")
    atomic_write_bytes(os.path.join(out_dir, image_rel), png.tobytes())
    save_masks(os.path.join(out_dir, masks_rel), case.masks, case.finding_masks)
    entry = {"id": case.id, "report": case.report, "image_path": [image_rel], "masks": masks_rel,
             "findings": case.findings, "prior_report": case.prior_report, "key_phrases": list(case.key_phrases)}
    if split is not None:
        entry["split"] = split
    return entry


def load_case(entry: dict, root: str) -> PhantomCase:
    """The PhantomCase an annotation entry describes (image and masks read from disk)."""
    path = os.path.join(root, entry["image_path"][0])
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise FileNotFoundError(f"image not found or unreadable: {path}")
    anatomy, findings = load_masks(os.path.join(root, entry["masks"]))
    return PhantomCase(id=entry["id"], image=image, masks=anatomy, finding_masks=findings, findings=entry["findings"],
                       report=entry["report"], prior_report=entry.get("prior_report", ""),
                       key_phrases=list(entry.get("key_phrases", [])))


def case_seed(dataset_seed: int, index: int) -> int:
    """Independent per-case seeds derived from the dataset seed (stable across worker counts)."""
    return int(np.random.SeedSequence([dataset_seed, index]).generate_state(1)[0])


def _write_chunk(job) -> list[dict]:
    out_dir, dataset_seed, items, size, knobs = job
    entries = []
    for index, split in items:
        case = generate_case(case_seed(dataset_seed, index), size, case_id=f"phantom_{dataset_seed}_{index:05d}",
                             **knobs)
        entries.append(write_case(case, out_dir, split))
    return entries


def split_counts(n: int, fractions=(0.8, 0.1, 0.1)) -> dict[str, int]:
    if len(fractions) != 3 or any(f < 0 for f in fractions) or abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"split fractions must be three non-negative numbers summing to 1, got {fractions}")
    val, test = int(round(n * fractions[1])), int(round(n * fractions[2]))
    return {"train": n - val - test, "val": val, "test": test}


def write_dataset(out_dir: str, n: int, seed: int, size: int = 256, *, fractions=(0.8, 0.1, 0.1),
                  workers: int | None = None, overwrite: bool = False, **knobs) -> dict:
    """Write n phantom cases to out_dir in R2Gen layout (module docstring); returns the annotation dict.

    Cases are split train/val/test by `fractions` after a seeded shuffle. `workers` processes (default: all CPUs)
    generate in parallel; the result does not depend on the worker count. Refuses to replace an existing
    annotation.json unless overwrite=True.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    ann_path = os.path.join(out_dir, "annotation.json")
    if os.path.exists(ann_path) and not overwrite:
        raise FileExistsError(f"{ann_path} exists; pass overwrite=True (--overwrite) to replace the dataset")
    if size < 64:
        raise ValueError(f"size must be >= 64 pixels, got {size}")
    knobs = check_knobs(knobs)  # fail before any worker starts
    counts = split_counts(n, fractions)
    order = np.random.default_rng([seed, 99]).permutation(n)
    split_of = np.empty(n, dtype=object)
    split_of[order[: counts["train"]]] = "train"
    split_of[order[counts["train"]: counts["train"] + counts["val"]]] = "val"
    split_of[order[counts["train"] + counts["val"]:]] = "test"
    items = [(i, str(split_of[i])) for i in range(n)]
    workers = max(1, min(workers or os.cpu_count() or 1, n))
    chunk = max(1, min(50, -(-n // (workers * 4))))
    jobs = [(out_dir, seed, items[i:i + chunk], size, knobs) for i in range(0, n, chunk)]
    if workers == 1:
        results = [_write_chunk(j) for j in jobs]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(pool.map(_write_chunk, jobs))
    annotation = {s: [] for s in SPLITS}
    for entries in results:
        for e in entries:
            annotation[e["split"]].append(e)
    atomic_write_json(ann_path, annotation)
    return annotation
