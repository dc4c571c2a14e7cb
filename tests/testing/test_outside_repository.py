"""Done-when of issue 16: an integrator's test file outside this repository, using only the
plugin's fixtures and its own app with one owned task, passes under plain ``pytest`` with
leasegate installed; docs/testing.md shows exactly that file and that app."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
FILES = ("my_app.py", "test_my_owned_task.py")


def test_an_integrators_tests_pass_under_plain_pytest(tmp_path: Path) -> None:
    for name in FILES:
        shutil.copy(EXAMPLES / name, tmp_path / name)
    # nothing of this checkout on the path: only the installed leasegate and its plugin
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    out = subprocess.run([sys.executable, "-m", "pytest", "-v", "-p", "no:cacheprovider"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    for test in ("test_a_live_run_gets_its_result",
                 "test_the_late_result_of_an_expired_run_is_quarantined",
                 "test_a_superseded_runs_result_goes_to_the_dead_letters"):
        assert f"test_my_owned_task.py::{test} PASSED" in report, report
    assert "3 passed" in report
    assert f"rootdir: {tmp_path}" in report  # not this repository's configuration


def test_docs_testing_shows_the_example_files_as_they_are() -> None:
    doc = (ROOT / "docs" / "testing.md").read_text()
    for name in FILES:
        assert f"```python\n{(EXAMPLES / name).read_text()}```" in doc, (
            f"docs/testing.md no longer shows docs/examples/{name} as it is: copy it again")
    assert "(docs/testing.md)" in (ROOT / "README.md").read_text()


def test_the_plugin_is_inert_until_a_fixture_is_asked_for(tmp_path: Path) -> None:
    """An entry point every pytest session loads: fixtures only, no hook, and -p no:leasegate
    turns it off."""
    from leasegate.testing import plugin

    assert not [name for name in vars(plugin) if name.startswith("pytest_")]
    (tmp_path / "test_plain.py").write_text("def test_nothing_of_leasegate():\n    pass\n")
    for args, seen in (((), True), (("-p", "no:leasegate"), False)):
        out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                              "--fixtures", *args], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stdout + out.stderr
        assert ("leasegate_worker" in out.stdout) is seen, out.stdout
