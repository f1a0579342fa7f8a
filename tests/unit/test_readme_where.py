"""README.md's "Where things are": every `path:line` it names exists, and that line starts with the
text the README quotes after it, so a move or a rename fails here rather than misleading a reader."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`([\w./-]+):(\d+)` `([^`]+)`")


def _section() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("## Where things are\n")
    return text[start:text.index("\n## ", start + 1)]


def test_each_answer_names_a_line_that_says_what_the_readme_quotes():
    references = REFERENCE.findall(_section())
    assert len(references) >= 3, references
    for path, line, quoted in references:
        lines = (ROOT / path).read_text().splitlines()
        assert int(line) <= len(lines), f"{path} has {len(lines)} lines, the README names line {line}"
        assert lines[int(line) - 1].lstrip().startswith(quoted), \
            f"{path}:{line} is {lines[int(line) - 1]!r}, the README quotes {quoted!r}"


def test_the_three_questions_are_answered():
    section = _section()
    for question in ("tensor_parallel_size", "Milvus application user's password", "restarts the API"):
        assert question in section, question
