"""Document filters: each a callable `filter(doc) -> None (keep) | str (drop reason)` built with `.from_config(cfg)`,
and a one-step stage `build_stage(section)` (data_pipeline/stages.py lists them in run order).

license.py (permissive licences for code), quality.py (BigCode code / Gopher text heuristics), decontam.py
(benchmark contamination), english.py (language identification), topic.py (computer-science topic of text).
"""
from data_pipeline.filters.decontam import DecontamFilter
from data_pipeline.filters.english import EnglishFilter
from data_pipeline.filters.license import LicenseFilter
from data_pipeline.filters.quality import QualityFilter
from data_pipeline.filters.topic import TopicFilter

__all__ = ["DecontamFilter", "EnglishFilter", "LicenseFilter", "QualityFilter", "TopicFilter"]
