"""Readers of the real, offline text that the labelled computer-science-topic set is built from.

Each reader yields `RawDoc`s: one text with its label (1 = computer science, 0 = not), its source name and its group
(the unit that the train/test split keeps whole: one man page, one Python package, one novel, one newsgroup...).
Where the text comes from (docs/filters.md has the whole list and how the build script fetches it):
  positives: man pages (/usr/share/man), Python's documentation sources (Debian `python3.11-doc`), docstrings of
             installed Python libraries, FOLDOC (Debian `dict-foldoc`), Wikipedia articles in computing categories
             (gensim's test data); comp.* newsgroup posts too, where the newsgroup sample has any;
  negatives: Jane Austen's novels (Debian `r-cran-janeaustenr`), fortunes (Debian `fortunes`, computer files left out),
             The Devil's Dictionary (Debian `dict-devil`), GCIDE definitions (Debian `dict-gcide`), Wikipedia
             articles outside computing, non-computing newsgroups and Lee's news articles (gensim's test data).
"""
from __future__ import annotations

import ast
import bz2
import functools
import gzip
import hashlib
import io
import pickle
import re
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from tools.topic_eval.austen import read_rdb_character_vectors
from tools.topic_eval.markup import roff_to_text, rst_to_text, wiki_categories, wiki_to_text


@dataclass(frozen=True)
class RawDoc:
    text: str
    label: int  # 1 = computer science, 0 = not
    source: str
    group: str


def stable_fraction(key: str) -> float:
    """A number in [0, 1) fixed by `key`: deterministic sampling and splitting without a global RNG."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64


# ---- positives ----------------------------------------------------------------------------------------------------
def man_pages(root: Path, sections: tuple[str, ...] = ("1", "2", "3", "5", "7", "8"),
              sample: float = 0.15) -> Iterator[RawDoc]:
    """A deterministic sample of the English man pages (top-level section dirs only, not translations)."""
    for section in sections:
        for path in sorted((root / f"man{section}").glob("*")):
            if stable_fraction(path.name) >= sample:
                continue
            try:
                raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
            except (OSError, EOFError, zlib.error):
                continue
            source = raw.decode("utf-8", errors="replace")
            if source.lstrip().startswith(".so "):  # an alias page
                continue
            yield RawDoc(roff_to_text(source), 1, "man_pages", f"man:{path.name.split('.')[0]}")


def python_docs(root: Path) -> Iterator[RawDoc]:
    """Python's documentation (reST sources as shipped with the HTML docs), one group per page."""
    for path in sorted(root.rglob("*.rst.txt")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith(("whatsnew/", "license")):  # changelogs and licence text are not prose about a topic
            continue
        yield RawDoc(rst_to_text(path.read_text(errors="replace")), 1, "python_docs", f"pydoc:{rel}")


_DOCTEST_LINE = re.compile(r"^\s*(>>>|\.\.\.)")


def _docstring_prose(doc: str) -> str:
    """A docstring without its doctest examples (code, not prose) and their printed results."""
    out, in_example = [], False
    for line in doc.splitlines():
        if _DOCTEST_LINE.match(line):
            in_example = True
            continue
        if in_example and line.strip():
            continue
        in_example = False
        out.append(line)
    return "\n".join(out)


def docstrings(site_packages: Path, packages: tuple[str, ...], min_chars: int = 300,
               max_files_per_package: int = 150) -> Iterator[RawDoc]:
    """Module, class and function docstrings of installed libraries; one group per top-level package.
    A deterministic sample of each package's files bounds the time on huge packages (torch, transformers)."""
    for package in packages:
        files = [p for p in sorted((site_packages / package).rglob("*.py"))
                 if "test" not in p.parts and "tests" not in p.parts]
        files.sort(key=lambda p: stable_fraction(p.relative_to(site_packages).as_posix()))
        for path in files[:max_files_per_package]:
            try:
                tree = ast.parse(path.read_text(errors="replace"))
            except (SyntaxError, ValueError, RecursionError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                    doc = ast.get_docstring(node)
                    if doc and len(doc) >= min_chars:
                        yield RawDoc(_docstring_prose(doc), 1, "docstrings", f"docstrings:{package}")


def dictd_entries(dict_dz: Path) -> Iterator[tuple[str, str]]:
    """(headword, definition) pairs of a dictd database (`.dict.dz` is gzip; the `.index` beside it has offsets)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"  # offsets are base-64 numbers

    def b64(value: str) -> int:
        return functools.reduce(lambda number, ch: number * 64 + alphabet.index(ch), value, 0)

    data = gzip.decompress(dict_dz.read_bytes())
    index = dict_dz.with_name(dict_dz.name.replace(".dict.dz", ".index"))
    for line in index.read_text(errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) < 3 or parts[0].startswith("00-database"):
            continue
        start, length = b64(parts[1]), b64(parts[2])
        yield parts[0], data[start:start + length].decode("utf-8", errors="replace")


def foldoc(dict_dz: Path) -> Iterator[RawDoc]:
    for head, body in dictd_entries(dict_dz):
        yield RawDoc(body, 1, "foldoc", f"foldoc:{head[:1].lower()}")


# ---- negatives ----------------------------------------------------------------------------------------------------
# Fortune files about computers, Unix, Debian and Perl are left out: they are neither clearly CS nor clearly not.
FORTUNE_FILES_LEFT_OUT = ("computers", "debian", "linux", "linuxcookie", "perl", "knghtbrd", "ascii-art", "art",
                          "definitions", "translate-me", "disclaimer")


def fortunes(root: Path) -> Iterator[RawDoc]:
    for path in sorted(root.iterdir()):
        if path.suffix or path.name in FORTUNE_FILES_LEFT_OUT or not path.is_file():
            continue
        cookies = path.read_text(errors="replace").split("\n%\n")
        yield RawDoc("\n\n".join(c.strip() for c in cookies), 0, "fortunes", f"fortunes:{path.name}")


def devils_dictionary(dict_dz: Path) -> Iterator[RawDoc]:
    for head, body in dictd_entries(dict_dz):
        yield RawDoc(body, 0, "devils_dictionary", f"devil:{head[:1].lower()}")


_GCIDE_NOISE = re.compile(r"\[[^\]]*\]|\\[^\\\n]*\\|[{}]")  # [1913 Webster] tags, \pro"nun`ciations\, braces


def gcide(dict_dz: Path) -> Iterator[RawDoc]:
    """Definitions of the GNU Collaborative International Dictionary of English (Webster 1913 + WordNet): general
    vocabulary, including the technical language of chemistry, law, medicine... that is not computer science."""
    seen: set[str] = set()
    for head, body in dictd_entries(dict_dz):
        if body in seen:  # several headwords point at one entry
            continue
        seen.add(body)
        yield RawDoc(_GCIDE_NOISE.sub(" ", body), 0, "gcide", f"gcide:{head[:2].lower()}")


AUSTEN_BOOKS = ("sensesensibility", "prideprejudice", "mansfieldpark", "emma", "northangerabbey", "persuasion")


def austen_novels(rdb: Path) -> Iterator[RawDoc]:
    """Jane Austen's six novels from the R package's lazy-load database (one line of text per vector element)."""
    for name, lines in read_rdb_character_vectors(rdb).items():
        if name in AUSTEN_BOOKS:
            yield RawDoc("\n".join(lines), 0, "austen_novels", f"austen:{name}")


# ---- mixed: labelled by their own metadata --------------------------------------------------------------------------
# Wikipedia categories that make an article computer science, and ones that make it ambiguous (left out).
WIKI_CS = re.compile(r"comput|programming|software|algorithm|operating system|data structure|compiler|"
                     r"cryptograph|internet|unix|linux|microprocessor|database|file format|markup|"
                     r"artificial intelligence|machine learning|character encoding|free software", re.IGNORECASE)
WIKI_AMBIGUOUS = re.compile(r"video game|electronic|telecommunic|mathemat|logic|technolog|engineering|calculat|"
                            r"information|cipher|code|signal|number|statistic", re.IGNORECASE)


def wikipedia(xml_bz2: Path, min_chars: int = 500) -> Iterator[RawDoc]:
    """Articles of a (shortened) Wikipedia dump, labelled by their categories; redirects and ambiguous ones skipped."""
    with bz2.open(xml_bz2) as stream:
        for _event, elem in ET.iterparse(stream):
            if not elem.tag.endswith("}page"):
                continue
            title = next((e.text for e in elem.iter() if e.tag.endswith("}title")), "") or ""
            wikitext = next((e.text for e in elem.iter() if e.tag.endswith("}text")), "") or ""
            elem.clear()
            if wikitext.lstrip().upper().startswith("#REDIRECT"):
                continue
            categories = " | ".join(wiki_categories(wikitext))
            if WIKI_CS.search(categories):
                label = 1
            elif WIKI_AMBIGUOUS.search(categories) or WIKI_CS.search(title):
                continue
            else:
                label = 0
            text = wiki_to_text(wikitext)
            if len(text) >= min_chars:
                yield RawDoc(text, label, "wikipedia", f"wiki:{title}")


NEWSGROUPS_AMBIGUOUS = ("sci.crypt", "sci.electronics", "misc.forsale")  # neither clearly CS nor clearly not


class _Ignored:
    """Stands in for the numpy arrays in the pickle (the label array, which the posts' headers repeat)."""

    def __init__(self, *args: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


class _BunchUnpickler(pickle.Unpickler):
    """Loads gensim's pickled scikit-learn `Bunch` as plain dicts, numpy arrays as `_Ignored`; refuses any other
    global, so nothing in the file can run code."""

    def find_class(self, module: str, name: str):  # type: ignore[override]
        if (module, name) == ("copy_reg", "_reconstructor"):
            return lambda cls, base, state: dict(state or {})
        if name == "Bunch" or (module in ("__builtin__", "builtins") and name in ("dict", "object")):
            return dict
        if module.startswith("numpy") and name in ("_reconstruct", "ndarray", "dtype"):
            return _Ignored
        raise pickle.UnpicklingError(f"mini_newsgroup: unexpected global {module}.{name}")


def newsgroups(mini_newsgroup: Path) -> Iterator[RawDoc]:
    """20 Newsgroups sample (gensim's zlib-compressed pickle): comp.* posts positive, ambiguous groups left out."""
    bunch = _BunchUnpickler(io.BytesIO(zlib.decompress(mini_newsgroup.read_bytes())), encoding="latin1").load()
    for post in bunch["data"]:
        header, _, body = post.partition("\n\n")
        match = re.search(r"^Newsgroups:\s*([^\s,]+)", header, re.MULTILINE)
        group = match.group(1) if match else "unknown"
        if group in NEWSGROUPS_AMBIGUOUS or group == "unknown":
            continue
        body = "\n".join(ln for ln in body.splitlines() if not ln.lstrip().startswith((">", "|")))
        yield RawDoc(body, int(group.startswith("comp.")), "newsgroups", f"news:{group}")


def lee_news(corpus: Path) -> Iterator[RawDoc]:
    """Lee's corpus of Australian news articles, one per line."""
    for i, line in enumerate(corpus.read_text(errors="replace").splitlines()):
        yield RawDoc(line, 0, "lee_news", f"lee:{i // 10}")
