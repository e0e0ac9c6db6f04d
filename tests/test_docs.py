"""README stays true: its configuration reference matches the dataclasses, its commands exist."""

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_config_reference_is_current():
    result = subprocess.run([sys.executable, "jobs/config_reference.py", "--check"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


def test_readme_commands_are_the_makefile_targets_ci_runs():
    readme = open(os.path.join(REPO, "README.md")).read()
    makefile = open(os.path.join(REPO, "Makefile")).read()
    assert "make demo" in readme and "make test" in readme
    assert "\ndemo: setup" in makefile and "\ntest: setup" in makefile
    assert "make test" in open(os.path.join(REPO, ".ci", "run")).read()
