"""The code base stays ruff-clean (configured in pyproject.toml)."""

import shutil
import subprocess
import sys

import pytest

from conftest import ROOT


def test_ruff_clean():
    if shutil.which("ruff") is None and subprocess.run(
            [sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode != 0:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_readme_names_the_system_packages_of_the_integration_tests():
    """Someone running the suite on a fresh machine learns from the README what to install
    for the tests that skip without it."""
    import sshhosts

    packages = {"openssh-server", "postgresql", *sshhosts.TOOL_PACKAGES.values()} - {
        "util-linux"}  # essential: on every Debian/Ubuntu system
    install_line = next(line for line in (ROOT / "README.md").read_text().splitlines()
                        if "apt-get install" in line)
    missing = sorted(p for p in packages if p not in install_line.split())
    assert not missing, f"README's apt-get line lacks {missing}"
