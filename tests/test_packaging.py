"""The distribution installs one import name, ``runq``, and ``python -m runq``
works like the ``runq`` script."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_the_wheel_holds_only_runq(tmp_path: Path) -> None:
    leftover = not (ROOT / "build").exists()  # setuptools builds in ./build: leave no trace
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--wheel-dir",
                str(tmp_path),
                str(ROOT),
            ],
            check=True,
            capture_output=True,
        )
    finally:
        if leftover:
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    [wheel] = tmp_path.glob("runq-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {name for name in top if not name.endswith(".dist-info")} == {"runq"}
    assert "runq/broker/scripts/claim.lua" in names
    assert "runq/__main__.py" in names


def run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    """``python -I -c code`` from a directory outside the repository: only what the
    installed distribution (editable here) puts on the path is importable."""
    return subprocess.run(
        [sys.executable, "-I", "-c", code], cwd="/", capture_output=True, text=True
    )


def test_only_runq_is_importable_from_the_installed_distribution() -> None:
    assert run_isolated("import runq, runq.broker, runq.agent, runq.control").returncode == 0
    for name in ("broker", "agent", "control"):
        result = run_isolated(f"import {name}")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, name


def test_the_public_face_re_exports_the_broker() -> None:
    import runq
    import runq.broker

    assert set(runq.__all__) == set(runq.broker.__all__)
    assert runq.Broker is runq.broker.Broker


def test_python_dash_m_runq_is_the_runq_script() -> None:
    by_module = subprocess.run(
        [sys.executable, "-I", "-m", "runq", "--help"], cwd="/", capture_output=True, text=True
    )
    by_script = subprocess.run(
        [str(Path(sys.executable).parent / "runq"), "--help"], capture_output=True, text=True
    )
    assert by_module.returncode == by_script.returncode == 0
    assert by_module.stdout == by_script.stdout
