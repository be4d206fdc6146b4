"""The README's custom-op snippet runs."""

import pathlib
import re

README = (pathlib.Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_readme_custom_op_snippet_runs():
    section = README.split("## Fast sparse inference and training (custom op)", 1)[1]
    (snippet,) = re.findall(r"```py\n(.*?)```", section.split("\n## ", 1)[0], flags=re.S)
    exec(compile(snippet, "README.md", "exec"), {})
