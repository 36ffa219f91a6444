"""Installable like a real package: the sdist and wheel ``python -m build`` makes, and the CI workflows.

The sdist is built from the files git tracks (as a clean clone has them),
the wheel from that sdist (as ``python -m build`` does), once with the C
compiler and once without one (``CC=/bin/false``): both wheels install and
run, and ``lossctl --version`` says which C speed-ups they carry.  The
workflow files are parsed with PyYAML and their structure checked.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from cli_run import proc_env

import lossctl

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the same parser, as a package of the test extras
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
NAME = f"lossctl-{lossctl.__version__}"
C_SOURCES = ["lossctl/io/_fastcsv.c", "lossctl/core/_exactsum.c", "lossctl/core/_kernels.c"]
EXTENSIONS = ["lossctl/io/_fastcsv", "lossctl/core/_exactsum", "lossctl/core/_kernels"]


def _sh(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    p = subprocess.run(args, cwd=cwd, env=proc_env(env), capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, f"{' '.join(args)} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


def _tracked_copy(dest: Path) -> Path:
    """The repository as a fresh clone has it (tracked files, and new ones not ignored)."""
    files = _sh(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT)
    for name in filter(None, files.split("\0")):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """sdist and wheel (``python -m build``), and a wheel built from the sdist without a compiler."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the git checkout (tracked files)")
    tmp = tmp_path_factory.mktemp("build")
    src = _tracked_copy(tmp / "src")
    out = tmp / "dist"
    # --no-isolation: the test extras hold build and setuptools (no download)
    _sh([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(src)])
    sdist = out / f"{NAME}.tar.gz"
    wheel = next(out.glob(f"{NAME}-*.whl"))
    nocc = tmp / "nocc"
    _sh([sys.executable, "-m", "pip", "wheel", "--no-build-isolation", "--no-deps", "-q",
         "-w", str(nocc), str(sdist)], env={"CC": "/bin/false", "CXX": "/bin/false"})
    return {"sdist": sdist, "wheel": wheel, "nocc": next(nocc.glob("*.whl")), "tmp": tmp}


def test_sdist_holds_sources_c_files_docs_and_tests(dist: dict[str, Path]) -> None:
    with tarfile.open(dist["sdist"]) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    for need in [*C_SOURCES, "setup.py", "pyproject.toml", "MANIFEST.in", "LICENSE", "README.md",
                 "docs/LOSSES.md", "tools/docs.py", "tests/test_cli.py", "tests/conftest.py",
                 "sample_data/house_prices.csv", "lossctl/cli.py", "lossctl/io/jsonl.py", ".ci/run"]:
        assert need in names, need
    assert not [n for n in names if n.endswith((".so", ".pyd", ".pyc")) or "__pycache__" in n]
    # every Python file of the package
    for py in (ROOT / "lossctl").rglob("*.py"):
        assert str(py.relative_to(ROOT)) in names, py


def _wheel_names(path: Path) -> set[str]:
    with zipfile.ZipFile(path) as z:
        return set(z.namelist())


def test_wheel_holds_the_package_only(dist: dict[str, Path]) -> None:
    names = _wheel_names(dist["wheel"])
    package = {n for n in names if not n.startswith(f"{NAME}.dist-info/")}
    assert all(n.startswith("lossctl/") for n in package), package
    assert {str(p.relative_to(ROOT)) for p in (ROOT / "lossctl").rglob("*.py")} <= package
    assert not [n for n in names if n.endswith(".c") or "sample_data" in n or n.startswith("tests/")]
    if shutil.which("gcc") or shutil.which("cc"):  # built here with the compiler: all four
        for ext in EXTENSIONS:
            assert any(n.startswith(ext + ".") and n.endswith((".so", ".pyd")) for n in names), ext
    assert not [n for n in _wheel_names(dist["nocc"]) if n.endswith((".so", ".pyd"))]


def test_wheel_metadata(dist: dict[str, Path]) -> None:
    with zipfile.ZipFile(dist["wheel"]) as z:
        meta = z.read(f"{NAME}.dist-info/METADATA").decode()
        entry = z.read(f"{NAME}.dist-info/entry_points.txt").decode()
        assert f"{NAME}.dist-info/licenses/LICENSE" in z.namelist()
    assert "lossctl = lossctl.__main__:main" in entry  # --version answered before Click loads
    assert "License-Expression: MIT" in meta
    for dep in ("click", "isal", "numpy", "pandas", "pyarrow", "rich"):
        assert f"Requires-Dist: {dep}>=" in meta
    extras = {ln.split(": ", 1)[1] for ln in meta.splitlines() if ln.startswith("Provides-Extra: ")}
    assert extras == {"test", "bench", "dask", "fsspec", "report", "dev"}
    assert "dask[distributed]" in meta and "matplotlib" in meta
    assert "Requires-Dist: dask[distributed]>=2025.1; extra == \"dask\"" in meta


@pytest.mark.parametrize("which,status", [
    ("wheel", "(C speed-ups: fastcsv, exactsum, kernels, keyindex)"),
    ("nocc", "(C speed-ups: not built, no C compiler at install time)"),
])
def test_wheel_installs_and_runs(dist: dict[str, Path], which: str, status: str) -> None:
    if which == "wheel" and not (shutil.which("gcc") or shutil.which("cc")):
        pytest.skip("no C compiler here: the wheel was built without the speed-ups")
    target = dist["tmp"] / f"installed-{which}"
    _sh([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--target",
         str(target), str(dist[which])])
    env = {"PYTHONPATH": str(target)}  # the dependencies come from this environment
    where = _sh([sys.executable, "-c", "import lossctl; print(lossctl.__file__)"], cwd=target, env=env)
    assert where.strip().startswith(str(target))
    script = target / "bin" / "lossctl"
    version = _sh([str(script), "--version"], env=env)
    assert version.strip() == f"lossctl, version {lossctl.__version__} {status}"
    value = _sh([str(script), "eval", str(ROOT / "sample_data" / "house_prices.csv"), "-l", "price",
                 "-p", "predicted_price", "-m", "mae", "-f", "value"], env=env)
    assert float(value) > 0


# --------------------------------------------------------------------------
# the CI workflows
# --------------------------------------------------------------------------

WORKFLOWS = ROOT / ".github" / "workflows"


def workflow(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the key `on` as true
    assert set(doc) >= {"name", "on", "jobs"}
    for job_name, job in doc["jobs"].items():
        assert "runs-on" in job and job.get("timeout-minutes"), job_name
        steps = job["steps"]
        assert steps and all(("uses" in s) != ("run" in s) for s in steps), job_name
        for s in steps:
            if "uses" in s:
                action, _, ref = s["uses"].partition("@")
                assert ref, f"{job_name}: {action} is not pinned to a version"
    return doc


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").partition("@")[0] == action]


def test_ci_workflow_runs_ci_run() -> None:
    ci = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(ci["on"])
    test = ci["jobs"]["test"]
    assert steps_using(test, "actions/checkout") and steps_using(test, "actions/setup-python")
    assert [s["run"] for s in test["steps"] if "run" in s][-1] == ".ci/run"
    assert test["timeout-minutes"] <= 30
    pythons = test["strategy"]["matrix"]["python"]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert pythons[0] == requires.removeprefix(">=")  # the oldest supported Python is tested
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert any("ruff check" in s.get("run", "") for s in ci["jobs"]["lint"]["steps"])


def test_release_workflow_builds_everywhere_and_publishes_by_trusted_publishing() -> None:
    rel = workflow("release.yml")
    assert rel["on"]["push"]["tags"] == ["v*"]
    wheels = rel["jobs"]["wheels"]
    oses = wheels["strategy"]["matrix"]["os"]
    assert any(o.startswith("ubuntu") for o in oses) and any(o.startswith("macos") for o in oses)
    assert any(o.startswith("windows") for o in oses)
    assert wheels["runs-on"] == "${{ matrix.os }}"
    (cibw,) = steps_using(wheels, "pypa/cibuildwheel")
    assert steps_using(wheels, "actions/upload-artifact")
    sdist = rel["jobs"]["sdist"]
    assert any("build --sdist" in s.get("run", "") for s in sdist["steps"])
    assert any("CC=/bin/false" in s.get("run", "") for s in sdist["steps"])  # installs without a compiler
    publish = rel["jobs"]["publish"]
    assert set(publish["needs"]) == {"wheels", "sdist"}
    assert "refs/tags/v" in publish["if"]
    assert publish["permissions"] == {"id-token": "write"}
    assert rel["permissions"] == {"contents": "read"}  # only the upload job may mint a token
    assert publish["environment"]["name"] == "pypi"
    (upload,) = steps_using(publish, "pypa/gh-action-pypi-publish")
    assert "with" not in upload or "password" not in upload["with"]  # no API token
    assert steps_using(publish, "actions/download-artifact")
    # cibuildwheel's configuration: what it builds and how it tests each wheel
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["cibuildwheel"]
    assert config["build"] and config["test-command"]
    assert any("sample_data/house_prices.csv" in c for c in config["test-command"])
