#!/usr/bin/env python
"""Build the labelled computer-science-topic set from real text available offline.

    python scripts/build_topic_eval_set.py --out build/topic_eval [--cache build/topic_eval_cache]

Debian packages are fetched with `apt-get download` and unpacked with `dpkg -x` into the cache (nothing is installed;
run `apt-get update` once first); gensim's test data comes from its wheel (`pip download --no-deps`). Man pages and
docstrings are read from this machine as it is. Writes `OUT/{train,val,test}.jsonl` and `OUT/summary.json`; the set
is not committed. Train the shipped scorer on it with `python -m tools.topic_eval.train`, measure it
with `python bench/topic_classifier.py`.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import sysconfig
import zipfile
from itertools import chain
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/ lives at the repository root
from tools.topic_eval import sources  # noqa: E402
from tools.topic_eval.dataset import build_examples, write_examples  # noqa: E402

DEBIAN_PACKAGES = ("fortunes", "dict-devil", "dict-foldoc", "dict-gcide", "python3.11-doc", "r-cran-janeaustenr")
GENSIM = "gensim==4.4.0"
GENSIM_FILES = (
    "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2",
    "gensim/test/test_data/mini_newsgroup",
    "gensim/test/test_data/lee_background.cor",
)
DOCSTRING_PACKAGES = (
    "torch", "transformers", "datasets", "numpy", "pandas", "pyarrow", "click", "flask", "werkzeug", "docutils",
    "IPython", "jinja2", "pygments", "requests", "httpx", "pydantic", "networkx", "matplotlib", "_pytest",
    "setuptools", "rich", "huggingface_hub", "fsspec", "attr", "hypothesis", "traitlets", "prompt_toolkit",
    "cryptography", "jedi", "parso", "libcst", "deepspeed", "accelerate", "peft", "omegaconf", "hydra",
)


def fetch_debian(cache: Path) -> Path:
    """Unpack the Debian packages into `cache/debian` (download only what is missing)."""
    debs, root = cache / "debs", cache / "debian"
    debs.mkdir(parents=True, exist_ok=True)
    for package in DEBIAN_PACKAGES:
        if not list(debs.glob(f"{package}_*.deb")):
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True)
    root.mkdir(parents=True, exist_ok=True)
    for deb in sorted(debs.glob("*.deb")):
        marker = root / f".unpacked-{deb.name}"
        if not marker.exists():
            subprocess.run(["dpkg", "-x", str(deb), str(root)], check=True)
            marker.touch()
    return root


def fetch_gensim_data(cache: Path) -> Path:
    wheels = cache / "wheels"
    found = sorted(wheels.glob("gensim-*.whl"))
    if not found:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), GENSIM],
                       check=True)
        found = sorted(wheels.glob("gensim-*.whl"))
    out = cache / "gensim"
    with zipfile.ZipFile(found[-1]) as wheel:
        for name in GENSIM_FILES:
            if not (out / name).exists():
                wheel.extract(name, out)
    return out / "gensim/test/test_data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("build/topic_eval"))
    parser.add_argument("--cache", type=Path, default=Path("build/topic_eval_cache"))
    parser.add_argument("--man-root", type=Path, default=Path("/usr/share/man"))
    parser.add_argument("--man-sample", type=float, default=0.15, help="fraction of man pages read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-per-source", type=int, default=3000)
    parser.add_argument("--max-per-group", type=int, default=400)
    args = parser.parse_args(argv)

    deb = fetch_debian(args.cache)
    gensim_data = fetch_gensim_data(args.cache)
    site_packages = Path(sysconfig.get_paths()["purelib"])
    dicts = deb / "usr/share/dictd"
    readers = {
        "man_pages": sources.man_pages(args.man_root, sample=args.man_sample),
        "python_docs": sources.python_docs(deb / "usr/share/doc/python3.11/html/_sources"),
        "docstrings": sources.docstrings(site_packages, DOCSTRING_PACKAGES),
        "foldoc": sources.foldoc(dicts / "foldoc.dict.dz"),
        "austen_novels": sources.austen_novels(deb / "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb"),
        "fortunes": sources.fortunes(deb / "usr/share/games/fortunes"),
        "devils_dictionary": sources.devils_dictionary(dicts / "devil.dict.dz"),
        "gcide": sources.gcide(dicts / "gcide.dict.dz"),
        "wikipedia": sources.wikipedia(gensim_data / GENSIM_FILES[0].rsplit("/", 1)[1]),
        "newsgroups": sources.newsgroups(gensim_data / "mini_newsgroup"),
        "lee_news": sources.lee_news(gensim_data / "lee_background.cor"),
    }
    docs = tqdm(chain.from_iterable(readers.values()), desc="reading sources", unit="doc")
    examples = build_examples(docs, seed=args.seed, max_per_source=args.max_per_source,
                              max_per_group=args.max_per_group)
    summary = write_examples(args.out, examples)
    missing = sorted(set(readers) - {row["source"] for row in summary["by_split_source_label"]})
    if missing:
        print(f"error: no examples from {missing}: check the paths above", file=sys.stderr)
        return 1
    print(f"wrote {summary['examples']} examples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
