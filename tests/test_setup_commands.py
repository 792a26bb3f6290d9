"""The README's two set-up commands run as written both as root without sudo and as a user with sudo, and .ci/run runs
exactly the README's test command."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), flags=re.S)
    setup = [b.strip() for b in blocks if "apt-get install" in b]
    assert len(setup) == 2, setup  # serve, test
    return setup


def apt_part(command: str) -> str:
    """The command up to its first `;` or `&&`: the system-package step."""
    return re.split(r";|&&", command, maxsplit=1)[0].strip()


def run_apt_part(command: str, tmp_path: Path, with_sudo: bool) -> tuple[subprocess.CompletedProcess, str]:
    """Run the apt step with a PATH that holds a recording `apt-get` (and a recording `sudo` or none)."""
    bin_dir = tmp_path / ("with-sudo" if with_sudo else "no-sudo")
    bin_dir.mkdir()
    log = bin_dir / "calls.log"
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "apt-get $*" >> "{log}"\n')
    if with_sudo:
        (bin_dir / "sudo").write_text(f'#!/bin/sh\necho "sudo" >> "{log}"\nexec "$@"\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    proc = subprocess.run([shutil.which("bash"), "-c", command], env=env, capture_output=True, text=True, timeout=30)
    return proc, log.read_text() if log.exists() else ""


@pytest.mark.parametrize("which", ["serve", "test"])
def test_the_readme_apt_step_runs_as_root_without_sudo(which, tmp_path):
    command = apt_part(readme_commands()[["serve", "test"].index(which)])
    proc, calls = run_apt_part(command, tmp_path, with_sudo=False)
    assert proc.returncode == 0, proc.stderr
    assert calls.splitlines()[0].startswith("apt-get install -y "), calls
    assert "libopenblas0-pthread" in calls


@pytest.mark.parametrize("which", ["serve", "test"])
def test_the_readme_apt_step_goes_through_sudo_where_it_exists(which, tmp_path):
    command = apt_part(readme_commands()[["serve", "test"].index(which)])
    proc, calls = run_apt_part(command, tmp_path, with_sudo=True)
    assert proc.returncode == 0, proc.stderr
    lines = calls.splitlines()
    assert len(lines) == 2 and lines[0] == "sudo" and lines[1].startswith("apt-get install -y "), calls


def test_ci_runs_exactly_the_readme_test_command():
    test_command = readme_commands()[1]
    lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()]
    assert test_command in lines, f".ci/run does not run the README's test command:\n{test_command}"
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


def test_the_test_command_reruns_the_numerical_tests_on_the_reference_blas():
    # OpenBLAS and MLX's reference BLAS sum in different orders; the numerical tests must hold under both.
    steps = [step.strip() for step in readme_commands()[1].split("&&")]
    assert steps[-2] == "python -m pytest -q -p no:cacheprovider"
    assert steps[-1] == "XLSTM_VIZ_BLAS=off python -m pytest -q -p no:cacheprovider -m numerical"
    assert "numerical:" in (ROOT / "pyproject.toml").read_text()  # registered, so the marker cannot be misspelt
