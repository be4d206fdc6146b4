"""The README's example runs, and CI runs the README's test command."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def code_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_python_example_runs_and_reaches_the_target(capsys):
    (example,) = code_blocks("python")
    exec(compile(example, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert float(re.search(r"global sparsity (\d\.\d+)", printed).group(1)) == pytest.approx(0.9, abs=1e-3)


def test_readme_has_two_setup_commands_and_ci_runs_the_test_one():
    setup = [block.strip() for block in code_blocks("bash")[:2]]
    assert "python -m state_of_sparsity.quickstart" in setup[0]
    assert "pytest" in setup[1]
    assert setup[1] in (ROOT / ".ci" / "run").read_text()
