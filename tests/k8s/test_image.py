"""The container image without a container engine: the Dockerfile's own build-stage steps
(its COPY, ENV, WORKDIR and RUN lines, read from the file) run into a clean directory, then
every command the image runs (its CMD, the header's list and the manifests' `args`) answers
`--help` from the installed venv, and the router's static files are in it. A COPY of a
path that moved, a package left out of the wheel or a missing package-data file fails here
rather than in a registry. `make image`'s preflight is checked with stand-in engines.

Rewrites keep it offline and within a few seconds: the venv is made `--without-pip` and
its `pip` is the test venv's (`pip --python`, ~4 s saved), `pip install` gets `--no-deps
--no-index --no-build-isolation`, and the fresh venv sees the test venv's site-packages
(dependencies and setuptools) through a .pth line, which does not run that directory's own
.pth files, so the editable install of this checkout stays out of it. `pip uninstall` is
skipped: with `--no-deps` what it removes was never installed, and pip must never be
pointed at the test venv's own packages.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
VENV = "/opt/cobrowse"  # where the Dockerfile builds its venv
OFFLINE_PIP = "pip install --no-deps --no-index --no-build-isolation"
HOST_PIP = f"{sys.executable} -m pip --disable-pip-version-check"
# Build-stage instructions that change nothing a test on the host can see.
IGNORED = {"ARG", "LABEL", "EXPOSE", "USER", "SHELL"}


@dataclass(frozen=True)
class Instruction:
    verb: str
    args: str


def instructions(dockerfile: Path) -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined and comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for line in dockerfile.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        verb, _, args = pending.strip().partition(" ")
        out.append(Instruction(verb.upper(), args.strip()))
        pending = ""
    return out


def build_stage(steps: list[Instruction]) -> list[Instruction]:
    start = next(i for i, s in enumerate(steps) if s.verb == "FROM" and " AS build" in s.args)
    end = next(i for i, s in enumerate(steps) if s.verb == "FROM" and i > start)
    return steps[start + 1 : end]


def image_commands(steps: list[Instruction]) -> list[list[str]]:
    """What the image runs after `python -m`: the CMD, the header's list of components and
    each manifest's `args` for the cobrowse image, up to the first flag."""
    cmd = next(s for s in steps if s.verb == "CMD")
    found = [yaml.safe_load(cmd.args)]
    header = (ROOT / "Dockerfile").read_text()
    listed = re.findall(r"^#   [a-z .]+?\s{2,}python -m ([a-z]+(?: [a-z]+)?)", header, re.M)
    found += [words.split() for words in listed]
    for doc in yaml.safe_load_all(
        "\n---\n".join(p.read_text() for p in (ROOT / "k8s/base").glob("*.yaml"))
    ):
        pod = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
        for c in pod.get("containers", []):
            if c.get("image", "").startswith("cobrowse") and c.get("args"):
                found.append(c["args"])
    commands: list[list[str]] = []
    for args in found:
        words = [a for a in args[: next((i for i, a in enumerate(args) if a[0] == "-"), None)]]
        if words not in commands:
            commands.append(words)
    return commands


# `python -m <words> --help` for each command, in one interpreter (one import of the shared
# dependencies, ~1 s of CPU each otherwise): [exit code, stdout] per command, as JSON.
HELP_ALL = """
import contextlib, io, json, runpy, sys
answers = []
for words in json.loads(sys.argv[1]):
    sys.argv, out, code = [words[0], *words[1:], "--help"], io.StringIO(), None
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_module(words[0], run_name="__main__", alter_sys=True)
    except SystemExit as exit:
        code = exit.code
    answers.append([code, out.getvalue()])
print(json.dumps(answers))
"""


def context_allowlist() -> set[str]:
    """What .dockerignore lets into the build context (it excludes `*`, then allows)."""
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "tests/k8s/test_image.py expects .dockerignore to be an allowlist"
    return {x[1:].rstrip("/") for x in lines if x.startswith("!")}


def run_build_stage(stage: list[Instruction], base: Path) -> Path:
    """Run the stage's steps under `base` (for `/`); the venv's path."""
    venv = base / VENV.lstrip("/")
    host_bin = base / "host-bin"  # `python3` here is the interpreter the tests run on
    host_bin.mkdir()
    (host_bin / "python3").symlink_to(sys._base_executable)
    env = {"PATH": f"{host_bin}:{os.environ['PATH']}", "HOME": str(base)}
    workdir = base
    for step in stage:
        if step.verb == "ENV":
            for pair in shlex.split(step.args):
                key, _, value = pair.partition("=")
                env[key] = value
        elif step.verb == "WORKDIR":
            workdir = base / step.args.lstrip("/")
            workdir.mkdir(parents=True, exist_ok=True)
        elif step.verb == "COPY":
            *sources, dest = shlex.split(step.args)
            assert not dest.startswith("/"), dest
            left_out = [src for src in sources if src.rstrip("/") not in context_allowlist()]
            assert not left_out, f".dockerignore keeps {left_out} out of the build context"
            for src in sources:
                source, target = ROOT / src, workdir / dest
                if source.is_dir():
                    shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy(source, target)
        elif step.verb == "RUN":
            script = (
                step.args.replace(f"{VENV}/bin/pip ", f"{HOST_PIP} --python {VENV}/bin/python ")
                .replace("-m venv ", "-m venv --without-pip ")
                .replace(VENV, str(venv))
                .replace("pip install", OFFLINE_PIP)
                .replace(f"{HOST_PIP} --python {venv}/bin/python uninstall", ": uninstall")
            )
            r = subprocess.run(
                ["sh", "-c", script], cwd=workdir, env=env, capture_output=True, text=True
            )
            assert r.returncode == 0, f"RUN {step.args}\n{r.stdout[-2000:]}{r.stderr[-3000:]}"
            if (venv / "pyvenv.cfg").exists():
                site = next(venv.glob("lib/python*/site-packages"))
                (site / "host-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
        else:
            assert step.verb in IGNORED, f"tests/k8s/test_image.py does not know {step.verb}"
    return venv


def test_the_dockerfile_steps_install_every_component(tmp_path):
    steps = instructions(ROOT / "Dockerfile")
    venv = run_build_stage(build_stage(steps), tmp_path)
    python = str(venv / "bin/python")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "PYTHONDONTWRITEBYTECODE": "1"}
    where = subprocess.run(
        [python, "-c", "import gateway, router, proxy, loadtest as m; print(m.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.startswith(str(venv)), where  # the installed copy, not this checkout
    commands = image_commands(steps)
    assert ["gateway"] in commands and ["router", "serve"] in commands, commands
    helps = subprocess.run(
        [python, "-c", HELP_ALL, json.dumps(commands)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert helps.returncode == 0, helps.stderr[-3000:]
    for words, (code, out) in zip(commands, json.loads(helps.stdout), strict=True):
        assert code in (0, None) and "usage" in out.lower(), (words, code, out[-2000:])
    static = ROOT / "router/static"
    site = next(venv.glob("lib/python*/site-packages"))
    missing = [
        str(p.relative_to(static))
        for p in static.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
        if not (site / "router/static" / p.relative_to(static)).is_file()
    ]
    assert not missing, f"not in the wheel (pyproject package-data): {missing}"


def make_image(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "image", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_make_image_checks_the_engine_first_and_passes_the_base_image():
    missing = make_image("CONTAINER_ENGINE=no-such-engine")
    assert missing.returncode != 0 and "is not a command on PATH" in missing.stderr
    down = make_image("CONTAINER_ENGINE=false")  # a CLI whose `info` fails: no daemon
    assert down.returncode != 0 and "no container daemon or socket answers" in down.stderr
    assert "PYTHON_IMAGE" in down.stderr  # and how to build without Docker Hub
    # `echo` answers `info`, so the build runs: with the base image given to make.
    ok = make_image("CONTAINER_ENGINE=echo", "PYTHON_IMAGE=mirror.example/python:3.11")
    assert ok.returncode == 0, ok.stderr
    assert "build --build-arg PYTHON_IMAGE=mirror.example/python:3.11 " in ok.stdout
