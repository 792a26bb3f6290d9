"""CI runs exactly the README's test command, and that command runs the numerical tests under both BLAS choices."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECOND_RUN = "XLSTM_VIZ_BLAS=off python -m pytest -q -p no:cacheprovider -m numerical"


def _readme_test_command() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("Run the tests"):]
    return re.search(r"```bash\n(.+?)\n```", section, re.S).group(1).strip()


def _ci_command() -> str:
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")]
    assert len(lines) == 1, lines
    return lines[0].strip()


def test_ci_runs_the_readme_test_command():
    # The system-package step differs (CI installs them itself, quietly); from the venv on the commands are one.
    readme = _readme_test_command()
    readme = readme[readme.index("python3 -m venv"):]
    assert _ci_command().replace("pip install -q ", "pip install ") == readme


def test_the_test_command_reruns_the_numerical_tests_on_the_reference_blas():
    steps = [step.strip() for step in _ci_command().split("&&")]
    assert steps[-2] == "python -m pytest -q -p no:cacheprovider" and steps[-1] == SECOND_RUN
    assert "numerical:" in (ROOT / "pyproject.toml").read_text()  # registered, so the marker cannot be misspelt
