"""The release: `python -m build` makes a wheel that installs in a fresh venv and serves from it.

Offline and quick: the build uses this venv's setuptools (no isolation), the fresh venv borrows this venv's
dependencies through a .pth file (the lock pins them) and the wheel goes in with --no-deps --no-index. The
fresh venv runs from a folder outside the source tree, so templates, docs and the CLI can only come from the
wheel.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.packaging


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)], cwd=ROOT)
    wheels = list(out.glob("tollway-*.whl"))
    assert len(wheels) == 1, f"expected one wheel in {out}: {list(out.iterdir())}"
    return wheels[0]


@pytest.fixture(scope="module")
def fresh_venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv")
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv)
    purelib = Path(
        _run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], venv
        ).strip()
    )
    # This venv's site-packages, where the locked dependencies live: a plain path line, so the editable
    # install of the source tree in there (itself a .pth file) is not processed.
    (purelib / "borrowed-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--quiet",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        cwd=venv,
    )
    return venv


def test_the_wheel_carries_templates_docs_and_license(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "tollway/dashboard/templates/base.html" in names
    assert "tollway/py.typed" in names
    assert "tollway/db/alembic/env.py" in names
    assert "tollway/db/alembic/versions/v0001_baseline.py" in names
    data = [name for name in names if ".data/data/share/tollway/" in name]
    assert any(name.endswith("share/tollway/README.md") for name in data)
    assert any(name.endswith("share/tollway/docs/deploy.md") for name in data)
    assert any(name.endswith("share/tollway/docs/providers.md") for name in data)
    assert any(name.endswith("/licenses/LICENSE") or name.endswith("share/tollway/LICENSE") for name in names)


@pytest.fixture(scope="module")
def served(fresh_venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("operator")
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("TOLLWAY_")}
    env["TOLLWAY_DATABASE_URL"] = f"sqlite:///{workdir / 'tollway.db'}"
    env["PYTHONPATH"] = ""
    tollway = str(fresh_venv / "bin" / "tollway")
    out = _run([tollway, "demo"], cwd=workdir, env=env)
    assert "demo API key" in out
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(
        [tollway, "serve", "--port", str(port)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, (workdir / "serve.log").read_text()
            assert time.monotonic() < deadline, "the installed gateway did not answer /health in 30 s"
            time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        process.wait(15)
        log.close()


def test_the_installed_gateway_serves_pages_and_models(served: str, fresh_venv: Path) -> None:
    sign_in = httpx.get(served + "/login", timeout=10)
    assert sign_in.status_code == 200
    assert "<html" in sign_in.text.lower()
    models = httpx.get(served + "/api/v1/models", timeout=10).json()
    assert any(model["id"] == "tollway/offline-small" for model in models["data"])
    located = _run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import tollway, sys; from tollway.assistant.docs import default_doc_paths; "
            "print(tollway.__file__); print(default_doc_paths(None)[1])",
        ],
        cwd=fresh_venv,
    ).splitlines()
    assert str(fresh_venv) in located[0], "tollway must come from the wheel, not the source tree"
    assert located[1] == str(fresh_venv / "share" / "tollway")
