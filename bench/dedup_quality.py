"""Near-dedup quality on a planted set: precision and recall of duplicate detection at the 0.7 threshold.

Real files (Python standard-library sources) plus mutated copies at known Jaccard levels (words replaced by fresh
identifiers, or blocks of lines deleted) go through the whole `near_dedup` stage (all four steps, several shards).
Ground truth is the exact Jaccard of the word 5-gram sets of every pair of documents (sparse all-pairs), so real
near-duplicates among the originals count too. A document is a true duplicate when some other document has
Jaccard >= threshold with it; it is detected when the stage puts it in a cluster of two or more.

    python bench/dedup_quality.py [--levels margin|near|all] [--originals 300] [--set verify_jaccard=false]
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from scipy import sparse

from data_pipeline.dedup.minhash import MinHasher, collision_probability
from data_pipeline.dedup.near_dedup import NearDedupConfig, build_stage
from data_pipeline.records import Document, write_documents
from data_pipeline.executor import run_stage
from data_pipeline.stage import StageContext

# Target Jaccard of the planted copies. "margin": duplicates and non-duplicates at least 0.1 from the threshold
# (the precision/recall targets); "near": copies within 0.1 of it, where LSH detection follows its S-curve;
# "all": both.
LEVEL_SETS = {
    "margin": (1.0, 0.95, 0.9, 0.85, 0.8, 0.6, 0.5, 0.3),
    "near": (0.78, 0.75, 0.72, 0.68, 0.65, 0.62),
}
LEVEL_SETS["all"] = LEVEL_SETS["margin"] + LEVEL_SETS["near"]
WORD = re.compile(r"[A-Za-z_0-9]+")
BINS = (0.0, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0001)


def stdlib_files(n: int, rng: random.Random) -> list[tuple[str, str]]:
    root = Path(random.__file__).parent
    files = sorted(
        p for p in root.rglob("*.py") if "test" not in str(p.relative_to(root)) and "site-packages" not in p.parts
    )
    out = []
    for path in rng.sample(files, len(files)):
        text = path.read_text(errors="replace")
        if 300 <= len(WORD.findall(text)) <= 20000:
            out.append((str(path.relative_to(root)), text))
        if len(out) == n:
            break
    return out


def replace_words(text: str, rng: random.Random, target: float) -> str:
    """Replace a share p of words so that about (1-p)^5 of the 5-grams survive: J ~ q / (2 - q)."""
    q = 2 * target / (1 + target)
    p = 1 - q ** (1 / 5)
    return WORD.sub(lambda m: f"zz{rng.randrange(10**9)}" if rng.random() < p else m.group(0), text)


def delete_lines(text: str, rng: random.Random, target: float) -> str:
    """Delete one contiguous block of lines: a share d of the 5-grams goes, J ~ 1 - d."""
    lines = text.split("\n")
    n_del = int(round(len(lines) * (1 - target)))
    start = rng.randrange(0, max(1, len(lines) - n_del + 1))
    return "\n".join(lines[:start] + lines[start + n_del :])


def build_planted(originals: int, copies_of: int, seed: int, levels: tuple[float, ...]) -> list[Document]:
    rng = random.Random(seed)
    files = stdlib_files(originals, rng)
    docs = [Document(id=f"orig{i:04d}", text=t, kind="code", lang="python", source="stdlib", path=p)
            for i, (p, t) in enumerate(files)]
    for i, (path, text) in enumerate(files[:copies_of]):
        for level in levels:
            mutate = delete_lines if (i % 3 == 2 and level >= 0.6) else replace_words
            copy = text if level == 1.0 else mutate(text, rng, level)
            docs.append(Document(id=f"copy{i:04d}-{level:.2f}", text=copy, kind="code", lang="python",
                                 source="planted", path=f"{path}#copy{level:.2f}"))
    rng.shuffle(docs)
    return docs


def exact_jaccard_matrix(docs: list[Document], hasher: MinHasher) -> tuple[np.ndarray, np.ndarray]:
    """All-pairs exact Jaccard of shingle sets (dense, docs x docs) and which documents have shingles."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for i, doc in enumerate(docs):
        for s in hasher.shingles(doc.text):
            rows.append(i)
            cols.append(vocab.setdefault(s, len(vocab)))
    m = sparse.csr_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(len(docs), len(vocab)))
    sizes = np.asarray(m.sum(axis=1)).ravel()
    inter = (m @ m.T).toarray()
    union = sizes[:, None] + sizes[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        jac = np.where(union > 0, inter / union, 0.0)
    np.fill_diagonal(jac, 0.0)
    return jac, sizes > 0


def run_dedup(docs: list[Document], shards: int, workers: int, cfg: dict, root: Path) -> dict[str, str]:
    """Run the near_dedup stage; returns {document id: id of the kept document of its cluster}."""
    paths = [root / "in" / f"part-{s:05d}.parquet" for s in range(shards)]
    for s, path in enumerate(paths):
        write_documents(path, docs[s::shards])
    ctx = StageContext(name="near_dedup", index=0, root=root / "out", input_shards=tuple(paths), cfg=cfg)
    run_stage(build_stage(cfg), ctx, workers=workers, log=lambda _: None)
    cluster_of = {}
    for s in range(shards):
        shard_docs = docs[s::shards]
        for row in pq.read_table(ctx.scratch_dir("clusters") / f"{s:05d}.parquet").to_pylist():
            cluster_of[shard_docs[row["row"]].id] = row["kept_id"]
            cluster_of[row["kept_id"]] = row["kept_id"]
    return cluster_of


def evaluate(docs, jac, has, cluster_of, threshold, bands, rows) -> dict:
    ids = [d.id for d in docs]
    truth = (jac >= threshold).any(axis=1) & has
    predicted = np.array([i in cluster_of for i in ids]) & has
    tp = int((truth & predicted).sum())
    result = {
        "documents": len(docs),
        "with_shingles": int(has.sum()),
        "true_duplicates": int(truth.sum()),
        "detected": int(predicted.sum()),
        "precision": tp / max(1, int(predicted.sum())),
        "recall": tp / max(1, int(truth.sum())),
    }
    # Excluding documents whose closest neighbour is within +-0.05 of the threshold (LSH's uncertain band).
    nearest = jac.max(axis=1)
    clear = has & (np.abs(nearest - threshold) >= 0.05)
    tp_c = int((truth & predicted & clear).sum())
    result["precision_outside_band"] = tp_c / max(1, int((predicted & clear).sum()))
    result["recall_outside_band"] = tp_c / max(1, int((truth & clear).sum()))
    # Detection of planted copies by their exact Jaccard with their original, against LSH theory.
    index = {d: i for i, d in enumerate(ids)}
    per_bin: dict[str, list[int]] = {}
    for i, d in enumerate(ids):
        if not d.startswith("copy"):
            continue
        orig = f"orig{d[4:8]}"
        j = jac[i, index[orig]]
        found = d in cluster_of and cluster_of.get(d) == cluster_of.get(orig)
        b = int(np.searchsorted(BINS, j, side="right") - 1)
        per_bin.setdefault(f"{BINS[b]:.2f}-{min(BINS[b + 1], 1.0):.2f}", []).append(int(found))
    result["copies_detected_by_jaccard"] = {
        k: {"copies": len(v), "detected": round(float(np.mean(v)), 3),
            "lsh_theory_mid": round(float(collision_probability(
                (float(k.split("-")[0]) + float(k.split("-")[1])) / 2, bands, rows)), 3)}
        for k, v in sorted(per_bin.items())
    }
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--originals", type=int, default=300)
    parser.add_argument("--copies-of", type=int, default=100, help="originals that get planted copies")
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--levels", choices=sorted(LEVEL_SETS), default="margin")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="near_dedup config override")
    args = parser.parse_args()
    overrides = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    cfg = NearDedupConfig.from_dict(overrides)
    bands, rows = cfg.band_rows
    docs = build_planted(args.originals, args.copies_of, args.seed, LEVEL_SETS[args.levels])
    t0 = time.perf_counter()
    jac, has = exact_jaccard_matrix(docs, MinHasher(cfg))
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cluster_of = run_dedup(docs, args.shards, args.workers, overrides, Path(tmp))
    t2 = time.perf_counter()
    result = evaluate(docs, jac, has, cluster_of, cfg.threshold, bands, rows)
    result.update(levels=args.levels, config=overrides, bands=bands, rows=rows, truth_seconds=round(t1 - t0, 1),
                  dedup_seconds=round(t2 - t1, 1))
    print(json.dumps(result, indent=1))
    ok = result["precision"] >= 0.95 and result["recall"] >= 0.95
    print(f"precision {result['precision']:.3f}  recall {result['recall']:.3f}  (target >= 0.95 each: "
          f"{'met' if ok else 'NOT met'})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
