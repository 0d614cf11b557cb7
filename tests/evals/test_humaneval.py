from evals.humaneval import (EXPECTED_PROBLEMS, build_chat_program, build_program, extract_code, load_problems,
                             truncate_at_stop)

STOPS = ["\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\n```"]


def test_loads_the_packaged_problems():
    problems = load_problems()
    assert len(problems) == EXPECTED_PROBLEMS
    assert problems[0].task_id == "HumanEval/0" and problems[0].entry_point == "has_close_elements"
    assert len(load_problems(limit=3)) == 3


def test_truncate_at_the_earliest_stop_sequence():
    text = "    return x\n\ndef other():\n    pass\nif __name__ == '__main__':\n"
    assert truncate_at_stop(text, STOPS) == "    return x\n"
    assert truncate_at_stop("    return 1", STOPS) == "    return 1"
    assert truncate_at_stop("    y = 1\n    # keep indented comments\n    return y\n#", STOPS) == \
        "    y = 1\n    # keep indented comments\n    return y"


def test_extract_code_prefers_the_block_with_the_entry_point():
    answer = ("Here is a helper:\n```python\nimport math\n```\nand the function:\n```python\n"
              "def add(a, b):\n    return a + b\n```\nDone.")
    assert extract_code(answer, "add") == "def add(a, b):\n    return a + b\n"
    assert extract_code("```\nprint(1)\n```", "add") == "print(1)\n"
    assert extract_code("def add(a, b): return a + b", "add") == "def add(a, b): return a + b"
    assert extract_code("```python\ndef add(a, b):\n    return a+b\n", "add") == "def add(a, b):\n    return a+b\n"


def test_programs_of_completion_and_chat():
    p = load_problems(limit=1)[0]
    program = build_program(p, p.canonical_solution)
    assert program.candidate == p.prompt + p.canonical_solution and program.entry_point == p.entry_point
    assert program.context == p.prompt and program.test == p.test  # the trusted side: never the completion
    full_function = "def has_close_elements(numbers, threshold):\n    return False\n"
    chat_program = build_chat_program(p, full_function)
    assert chat_program.candidate == "from typing import List\n" + full_function and chat_program.context == p.prompt
    assert build_chat_program(p, "    return False\n").candidate.startswith(p.prompt)
