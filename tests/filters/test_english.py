"""English filter: CLD2 on text and on code comments, thresholds and short texts from config."""
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from data_pipeline.filters.english import EnglishFilter
from data_pipeline.filters.quality import QualityFilter
from data_pipeline.records import Document
from data_pipeline.config import config_dir

ENGLISH = (Path(__file__).parent / "data" / "prose_public_domain.txt").read_text().split("\n\n")[2]
GERMAN = ("Es war einmal ein König und eine Königin, die sprachen jeden Tag: Ach, wenn wir doch ein Kind hätten! "
          "und kriegten immer keins. Da trug sich zu, als die Königin einmal im Bade saß, dass ein Frosch aus dem "
          "Wasser ans Land kroch und zu ihr sprach.")
FRENCH = ("Le petit prince s'assit sur une pierre et leva les yeux vers le ciel. Il se demandait si les étoiles "
          "étaient éclairées afin que chacun puisse un jour retrouver la sienne, et il resta longtemps silencieux "
          "au bord du désert.")
CODE_AS_TEXT = "for (i = 0; i < n; i++) {\n  a[i] = b[i] * c[i] + d;\n  if (a[i] > max) max = a[i];\n}\nreturn max;\n"


def text(body: str) -> Document:
    return Document(id="t", text=body, kind="text", lang="markdown", source="test")


def code(body: str, lang: str = "python") -> Document:
    return Document(id="c", text=body, kind="code", lang=lang, source="test")


@pytest.fixture(scope="module")
def default_filter() -> EnglishFilter:
    cfg = OmegaConf.to_container(OmegaConf.load(Path(config_dir()) / "pipeline" / "english" / "default.yaml"))
    return EnglishFilter.from_config(cfg)


def test_english_kept_german_and_french_dropped(default_filter):
    assert default_filter(text(ENGLISH)) is None
    assert default_filter(text(GERMAN)) == "not_english:de"
    assert default_filter(text(FRENCH)) == "not_english:fr"


def test_code_only_text_is_dropped_by_the_quality_stage_that_runs_before(default_filter):
    # CLD2 reads `for`, `max`, `return` as English; py3langid rejected this snippet but called 133 of 161 real
    # stdlib code excerpts English too. In the pipeline (data_pipeline/runner.py: quality, then english) Gopher's
    # word rules drop code posing as text before language id sees it.
    assert QualityFilter()(text(CODE_AS_TEXT * 3)) is not None
    assert default_filter(text(ENGLISH + "\n\n" + CODE_AS_TEXT)) is None  # prose with a snippet stays English


def test_markdown_code_blocks_do_not_count(default_filter):
    doc = text(ENGLISH + "\n\n```python\n" + "x = [f(i) for i in range(10)]\n" * 40 + "```\n")
    assert default_filter(doc) is None


def test_short_texts_follow_config(default_filter):
    assert default_filter(text("Hallo Welt")) is None  # too short to judge: kept by default
    strict = EnglishFilter.from_config({"short_text": "drop"})
    assert strict(text("Hallo Welt")) == "not_english:too_short"


def test_code_is_judged_by_its_comments(default_filter):
    german = '"""Liest die Datei und gibt die Abschnitte zurück, die der Benutzer im Formular ausgewählt hat."""\n' \
             "# Öffnet die Konfigurationsdatei und prüft, ob alle Einträge gültig sind und keine fehlen.\n" \
             "def lade(pfad):\n    return open(pfad).read()\n"
    english = '"""Read the file and return the sections that the user selected in the form."""\n' \
              "# Open the configuration file and check that every entry is valid and none is missing.\n" \
              "def load(path):\n    return open(path).read()\n"
    assert default_filter(code(german)) == "not_english:de"
    assert default_filter(code(english)) is None
    assert default_filter(code("def f(x):\n    return x * 2\n" * 20)) is None  # no comments: nothing to judge
    assert default_filter(code("int main() { return 0; } // Das Programm tut nichts.", "c")) is None  # too short
    off = EnglishFilter.from_config({"check_code_comments": False})
    assert off(code(german)) is None


def test_threshold_and_languages_from_config():
    assert EnglishFilter.from_config({"languages": ["en", "de"]})(text(GERMAN)) is None
    mixed = text("The Frosch sprach zu der Königin: you will have a daughter, before a year has passed.")
    assert EnglishFilter.from_config({})(mixed) is None  # P(en) is about 0.98
    assert EnglishFilter.from_config({"min_probability": 0.999})(mixed) == "not_english:en"
    assert EnglishFilter.from_config({"english": {"kinds": ["code"]}})(text(GERMAN)) is None


def test_bad_config_names_the_key():
    with pytest.raises(ValueError, match="min_prob"):
        EnglishFilter.from_config({"min_prob": 0.3})
    with pytest.raises(ValueError, match="min_probability"):
        EnglishFilter.from_config({"min_probability": 1.5})
    with pytest.raises(ValueError, match="xx"):
        EnglishFilter.from_config({"languages": ["xx"]})


def test_control_characters_and_other_scripts(default_filter):
    backspaced = ENGLISH.replace(" ", " _\x08\x08\x00", 5) + "\ud800\x7f"  # roff overstrike, NUL, lone surrogate
    assert default_filter(text(backspaced)) is None
    russian = ("Программа читает файл конфигурации, проверяет каждую запись и сообщает пользователю обо всех "
               "ошибках, которые она нашла, прежде чем начать работу с базой данных.")
    chinese = "这个程序读取配置文件，检查每一个条目，并在开始处理数据库之前把发现的所有错误报告给用户。" * 2
    assert default_filter(text(russian)) == "not_english:ru"
    assert default_filter(text(chinese)).startswith("not_english:zh")


def test_code_is_sampled_at_its_head_and_optionally_its_tail():
    body = "def f(x):\n    return x * 2\n" * 200
    german = "# Öffnet die Konfigurationsdatei und prüft, ob alle Einträge gültig sind und keine fehlen.\n" * 3
    head_only = EnglishFilter.from_config({"code_scan_chars": 1000})
    with_tail = EnglishFilter.from_config({"code_scan_chars": 1000, "code_tail_chars": 1000})
    assert head_only(code(body + german)) is None  # the German comments lie past the scanned head
    assert with_tail(code(body + german)) == "not_english:de"
    assert with_tail(code(german + body)) == "not_english:de"
    assert with_tail.code_sample("abc") == ["abc"]


@pytest.mark.parametrize("key,value,message", [
    ("languages", [], "languages is empty"),  # every document was dropped as not_english:en
    ("kinds", ["txt"], "no document kind"),  # the filter silently judged nothing
    ("max_chars", 0, "max_chars must be >= 1"),  # every text was dropped as not_english:und
    ("code_scan_chars", -10, "code_scan_chars must be >= 1"),  # code[:-10]: all but the last characters
    ("text_scan_chars", -100, "text_scan_chars must be >= 1"),
    ("min_chars", -5, "min_chars must be >= 0"),
])
def test_values_that_judge_nothing_or_everything_are_refused(key, value, message):
    with pytest.raises(ValueError, match=message):
        EnglishFilter.from_config({key: value})
