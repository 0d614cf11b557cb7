"""refact-eval's config is typed: a wrong type or an unknown key in the top level or in the section of a task to run
stops with one line naming `section.key` before the model loads (they were read raw by the task runners)."""
import pytest

from test_eval_input_attacks import refused_before_the_model_loads

TYPED = [
    # each was run silently before: a string is truthy, a string is a list of letters, int() truncates
    ("allow_other_tokenizer='false'", r"config.allow_other_tokenizer: expected true or false, got 'false'"),
    ("humaneval_infill.single_line=no", r"humaneval_infill.single_line: expected true or false, got 'no'"),
    ("humaneval_infill.orders=psm", r"humaneval_infill.orders: expected a list, got 'psm'"),  # the orders p, s, m
    ("humaneval_infill.orders=[psm,fim]", r"humaneval_infill.orders: expected a list of one of \('psm', 'spm'\)"),
    ("heldout_fim.kinds=code", r"heldout_fim.kinds: expected a list, got 'code'"),  # the kinds c, o, d, e
    ("heldout_fim.order=pms", r"heldout_fim.order must be one of \('psm', 'spm'\), got 'pms'"),  # after loading
    ("+heldout_fim.fim.rate=2", r"rate must be within \[0, 1\], got 2"),  # after the model had loaded
    ("humaneval.temperature=true", r"humaneval.temperature: expected a number, got True"),  # sampled at 1.0
    ("humaneval.temperature=nan", r"humaneval.temperature must be a finite number >= 0"),
    ("humaneval.stop_sequences=x", r"humaneval.stop_sequences: expected a list, got 'x'"),  # stop at every x
    ("humaneval.stop_sequences=[1]", r"humaneval.stop_sequences: expected a list of strings, got \[1\]"),
    ("humaneval.k=5", r"humaneval.k: expected a list, got 5"),  # TypeError traceback
    ("humaneval_chat.query=5", r"humaneval_chat.query: expected a string, got 5"),  # the prompt "5"
    ("seed=1.7", r"config.seed: expected an integer, got 1.7"),  # truncated to 1
    ("cpu_threads=abc", r"config.cpu_threads: expected an integer or null, got 'abc'"),  # int()'s message
    ("cpu_threads=0", r"cpu_threads=0: expected an integer >= 1"),  # torch's default thread count, silently
    ("perplexity.context=1.5", r"perplexity.context: expected an integer or null, got 1.5"),
    ("tasks=humaneval", r"config.tasks: expected a list, got 'humaneval'"),
    # misspelt keys were ignored and the default used
    ("+humaneval.temprature=0.8", r"humaneval: unknown key\(s\) \['temprature'\]"),
    ("+heldout_fim.sample_per_document=9", r"heldout_fim: unknown key\(s\) \['sample_per_document'\]"),
    ("+sed=3", r"config: unknown key\(s\) \['sed'\]"),
]


@pytest.mark.parametrize("override, match", TYPED, ids=[o for o, _ in TYPED])
def test_a_wrong_type_or_unknown_key_is_refused_before_the_model_loads(tmp_path, override, match):
    refused_before_the_model_loads(tmp_path, override, match, errors=ValueError)


def test_the_section_of_a_task_not_run_is_not_checked(tmp_path):
    from evals.cli import compose_config
    from evals.eval_config import eval_options
    from omegaconf import OmegaConf

    cfg = compose_config(["model=x", "tasks=[humaneval]", "humaneval_infill.single_line=no"])
    _, sections = eval_options(OmegaConf.to_container(cfg, resolve=True))
    assert list(sections) == ["humaneval"]


@pytest.mark.parametrize("preset", ["greedy", "sampled"])
def test_the_shipped_config_gives_the_sections_it_says(preset):
    from evals.cli import TASKS, compose_config
    from evals.eval_config import eval_options
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(compose_config(["model=x", f"preset={preset}", f"tasks=[{','.join(TASKS)}]"]),
                                    resolve=True)
    opts, sections = eval_options(values)
    assert (opts.allow_other_tokenizer, opts.seed, opts.limit) == (False, 0, None)
    for task, section in sections.items():  # every field as the YAML has it, nothing dropped
        assert {k: getattr(section, k) for k in values[task]} == values[task]
    assert sections["humaneval"].num_samples == (1 if preset == "greedy" else 200)
    assert sections["humaneval_infill"].orders == ["psm"] and sections["heldout_fim"].kinds == ["code"]
