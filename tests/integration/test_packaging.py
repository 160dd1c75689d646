"""The wheel installs one import root, `switchyard`, beside a user's own graphs/nodes/state modules.

The wheel is built from this checkout and installed into a fresh virtual environment in a
temporary folder, next to a user's project with its own `nodes.py`, `state.py` and `graphs.py`
(the names LangGraph apps use most). The wheel is installed without dependencies and the new
environment borrows this one's site-packages for them, so the test needs no download; what is
under test is the wheel's content and what it puts on the import path.
"""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.servers import offline_environment

REPO = Path(__file__).resolve().parents[2]
USER_MODULES = ("graphs", "nodes", "state")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps",
               "--no-build-isolation", "--quiet", "--wheel-dir", str(out)]  # fmt: skip
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (built,) = out.glob("switchyard_agents-*.whl")
    return built


@pytest.fixture(scope="module")
def venv_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed (dependencies borrowed from here)."""
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / "bin" / "python"
    command = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
               "--quiet", str(wheel)]  # fmt: skip
    subprocess.run(
        command,
        check=True,
        capture_output=True,
        timeout=300,
    )
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # A plain path entry, not a site dir: this environment's own .pth files (its editable install
    # of switchyard) are not processed there, so `switchyard` can only come from the wheel.
    Path(purelib, "_borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return python


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A user's LangGraph app with its own graphs.py, nodes.py and state.py."""
    for name in USER_MODULES:
        (tmp_path / f"{name}.py").write_text(f'OWNER = "user {name}"\n')
    return tmp_path


def first_readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^```python\n(.*?)^```$", text, flags=re.M | re.S)
    assert match is not None
    return match.group(1)


def run_in(python: Path, cwd: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = cwd / "main.py"
    script.write_text(code, encoding="utf-8")
    return subprocess.run(
        [str(python), str(script)],
        cwd=cwd,
        env=offline_environment(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_wheel_holds_one_import_root(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    roots = {name.split("/")[0] for name in names}
    assert roots == {"switchyard", "switchyard_agents-0.1.0.dist-info"}
    for package in USER_MODULES:  # the symlinked packages are in the wheel as real files
        assert f"switchyard/{package}/__init__.py" in names
        assert f"switchyard/{package}/py.typed" in names
    assert "switchyard/graphs/demos.py" in names
    assert "switchyard/py.typed" in names
    metadata = zipfile.ZipFile(wheel).read("switchyard_agents-0.1.0.dist-info/METADATA").decode()
    assert "Name: switchyard-agents" in metadata
    entry_points = zipfile.ZipFile(wheel).read("switchyard_agents-0.1.0.dist-info/entry_points.txt")
    assert b"switchyard = switchyard.cli:main" in entry_points


def test_the_readme_example_runs_beside_a_users_own_modules(
    venv_python: Path, user_project: Path
) -> None:
    done = run_in(venv_python, user_project, first_readme_example())
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[0] == "docs"


def test_the_bare_names_find_only_the_users_files(venv_python: Path, user_project: Path) -> None:
    done = run_in(
        venv_python,
        user_project,
        "import graphs, nodes, state, switchyard.graphs.router\n"
        "print(graphs.OWNER, nodes.OWNER, state.OWNER, sep=',')\n"
        "print(switchyard.graphs.router.__file__)\n",
    )
    assert done.returncode == 0, done.stderr
    owners, location = done.stdout.splitlines()
    assert owners == "user graphs,user nodes,user state"
    assert "site-packages" in location
    assert str(REPO) not in location


def test_without_the_users_files_the_bare_names_do_not_exist(
    venv_python: Path, tmp_path: Path
) -> None:
    done = run_in(
        venv_python,
        tmp_path,
        "import importlib.util\n"
        "print([importlib.util.find_spec(n) for n in ('graphs', 'nodes', 'state')])\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[None, None, None]"


def test_the_editable_install_has_no_bare_names_either(tmp_path: Path) -> None:
    """`make install` installs this checkout in editable mode: only `switchyard` is mapped."""
    done = run_in(
        Path(sys.executable),
        tmp_path,
        "import importlib.util\n"
        "print([importlib.util.find_spec(n) for n in ('graphs', 'nodes', 'state')])\n"
        "import switchyard.graphs.router as router\n"
        "print(router.__name__)\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["[None, None, None]", "switchyard.graphs.router"]
