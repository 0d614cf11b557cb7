"""Tools that use the library but are not part of it: the demo corpus of the main job and the labelled set and
training of the topic filter's scorer. Run them from the repository root (`python -m tools.demo_corpus ...`);
the library never imports them."""
