"""The install paths: what ``import fastreid_vld`` says when a step is missing, and setup.py's
requirements against the tested stack of requirements.txt (so that the two cannot drift)."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from conftest import REPO, run_python
from packaging.requirements import Requirement

from fastreid_vld import requirements_check

MAKE_INSTALL = '`make install` does every step (README, "Install")'

# Runs before `import fastreid_vld` in a fresh process: hides top-level modules as an environment
# without them would (a finder that refuses them), fakes distribution versions, and reports at exit
# whether the heavy modules had been imported when the import failed.
PRELUDE = """
import atexit, importlib.metadata, sys
HIDDEN, VERSIONS = {hidden!r}, {versions!r}
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
real_version = importlib.metadata.version
importlib.metadata.version = lambda dist: VERSIONS[dist] if dist in VERSIONS else real_version(dist)
sys.meta_path.insert(0, Hide())
atexit.register(lambda: print("imported:", sorted({{"torch", "fastreid", "open_clip"}} & set(sys.modules))))
import fastreid_vld
"""


def import_fastreid_vld(hidden: set[str] = frozenset(), versions: dict[str, str] | None = None):
    return run_python("-c", PRELUDE.format(hidden=set(hidden), versions=versions or {}), timeout=120)


def assert_one_clear_error(result: subprocess.CompletedProcess, message: str) -> None:
    """Exit status 1, a single short traceback through fastreid_vld only, ending in ``message``."""
    assert result.returncode == 1, result.stderr
    assert result.stderr.rstrip().endswith(f"ImportError: {message}"), result.stderr
    assert result.stderr.count("Traceback") == 1 and "During handling" not in result.stderr, result.stderr
    frames = re.findall(r'File "([^"]+)"', result.stderr)  # <string>, __init__.py, requirements_check.py
    assert frames and all(f == "<string>" or f.endswith(("fastreid_vld/__init__.py", "requirements_check.py"))
                          for f in frames), result.stderr
    # the check runs before anything heavy is imported
    assert result.stdout.strip() == "imported: []", result.stdout


def test_import_without_fastreid_names_the_no_deps_step():
    assert_one_clear_error(
        import_fastreid_vld(hidden={"fastreid"}),
        "fastreid_vld needs fastreid 1.4.0, installed apart with `pip install --no-deps fastreid==1.4.0` "
        f"(its metadata pins torch 1.13); {MAKE_INSTALL}")


def test_import_with_another_fastreid_version_names_the_version_and_the_step():
    assert_one_clear_error(
        import_fastreid_vld(versions={"fastreid": "1.3.0"}),
        "fastreid_vld needs fastreid 1.4.0, not fastreid 1.3.0 (compat.py adapts 1.4.0): installed apart "
        f"with `pip install --no-deps fastreid==1.4.0` (its metadata pins torch 1.13); {MAKE_INSTALL}")


def test_import_without_torch_names_the_pinned_torch_step():
    assert_one_clear_error(
        import_fastreid_vld(hidden={"torch"}),
        "fastreid_vld needs torch 2.13.0 and torchvision 0.28.0: `pip install torch==2.13.0 "
        f"torchvision==0.28.0` (the CPU or a CUDA build); {MAKE_INSTALL}")


def test_import_after_fastreid_brought_torch_1_13_says_so():
    # `pip install fastreid==1.4.0` without --no-deps replaces torch 2 by torch 1.13
    assert_one_clear_error(
        import_fastreid_vld(versions={"torch": "1.13.1"}),
        "fastreid_vld needs torch 2 (tested: 2.13.0), not torch 1.13.1: `pip install torch==2.13.0 "
        "torchvision==0.28.0` (the CPU or a CUDA build); torch 1.13 comes with fastreid's own "
        f"dependencies: install fastreid with --no-deps; {MAKE_INSTALL}")


def test_import_in_a_bare_environment_lists_every_missing_step_in_one_error():
    result = import_fastreid_vld(hidden={"torch", "torchvision", "open_clip", "yacs", "faiss", "fastreid"})
    assert_one_clear_error(result, "fastreid_vld needs:\n"
                                   "  - torch 2.13.0 and torchvision 0.28.0: `pip install torch==2.13.0 "
                                   "torchvision==0.28.0` (the CPU or a CUDA build)\n"
                                   "  - open_clip_torch, yacs: `pip install -e .` in the checkout "
                                   "(or `pip install -r requirements.txt`)\n"
                                   "  - faiss: `pip install -e .[cpu]` (faiss-cpu) or `pip install -e .[gpu]` "
                                   "(faiss-gpu), one of the two\n"
                                   "  - fastreid 1.4.0, installed apart with `pip install --no-deps "
                                   "fastreid==1.4.0` (its metadata pins torch 1.13)\n"
                                   f"{MAKE_INSTALL}")


def test_this_environment_passes_the_check():
    assert requirements_check.missing_steps() == []


# --------------------------------------------------------------------------- setup.py


def pins(*files: str) -> dict[str, Requirement]:
    """The requirements of requirements files, by normalized name."""
    found = {}
    for file in files:
        for line in (REPO / file).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                requirement = Requirement(line)
                found[normalize(requirement.name)] = requirement
    return found


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@pytest.fixture(scope="module")
def setup_metadata(tmp_path_factory) -> dict[str | None, dict[str, Requirement]]:
    """setup.py's requirements as pip reads them (setuptools' egg_info): {extra or None: {name: req}}."""
    egg_base = tmp_path_factory.mktemp("egg_info")
    built = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(egg_base)],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert built.returncode == 0, built.stderr
    by_extra: dict[str | None, dict[str, Requirement]] = {}
    for line in metadata.PathDistribution(egg_base / "fastreid_vld.egg-info").requires:
        requirement = Requirement(line)
        extra = re.search(r'extra == "([^"]+)"', str(requirement.marker)) if requirement.marker else None
        requirement.marker = None
        by_extra.setdefault(extra and extra.group(1), {})[normalize(requirement.name)] = requirement
    return by_extra


def test_setup_pins_torch_torchvision_and_open_clip_as_requirements_txt(setup_metadata):
    tested = pins("requirements.txt")
    for name in ("torch", "torchvision", "open-clip-torch"):
        assert str(setup_metadata[None][name].specifier) == str(tested[name].specifier), name
        assert str(tested[name].specifier).startswith("=="), name
    assert str(setup_metadata[None]["torch"].specifier) == f"=={requirements_check.TORCH_VERSION}"
    assert str(setup_metadata[None]["torchvision"].specifier) == f"=={requirements_check.TORCHVISION_VERSION}"


def test_every_setup_requirement_is_the_tested_version_or_a_lower_bound_at_it(setup_metadata):
    tested = pins("requirements.txt", "requirements-dev.txt")
    for extra, requirements in setup_metadata.items():
        for name, requirement in requirements.items():
            if name == "faiss-gpu":  # the GPU build of faiss-cpu's version: test_faiss_is_one_extra_of_two...
                continue
            assert name in tested, f"{name} ({extra or 'install_requires'}) is not in requirements*.txt"
            (pin,) = tested[name].specifier
            (spec,) = requirement.specifier
            assert spec.operator in ("==", ">=") and spec.version == pin.version, (
                f"{requirement} ({extra or 'install_requires'}) against {tested[name]} in requirements*.txt")


def test_every_line_of_requirements_txt_is_in_setup(setup_metadata):
    declared = {name for requirements in setup_metadata.values() for name in requirements}
    assert set(pins("requirements.txt", "requirements-dev.txt")) - declared == set()


def test_extras_export_and_dev_pin_as_requirements_files(setup_metadata):
    tested = pins("requirements.txt")
    export = {name: str(req) for name, req in setup_metadata["export"].items()}
    assert export == {name: str(tested[name]) for name in ("onnx", "onnxscript", "onnxruntime")}
    dev = {name: str(req) for name, req in setup_metadata["dev"].items()}
    assert dev == {name: str(req) for name, req in pins("requirements-dev.txt").items()}


def test_faiss_is_one_extra_of_two_and_the_gpu_build_is_the_tested_version(setup_metadata):
    # faiss-cpu and faiss-gpu install the same `faiss` module: never both, so neither by default
    assert not {"faiss-cpu", "faiss-gpu"} & set(setup_metadata[None])
    assert setup_metadata["cpu"] == {"faiss-cpu": pins("requirements.txt")["faiss-cpu"]}
    (cpu,) = setup_metadata["cpu"]["faiss-cpu"].specifier
    assert str(setup_metadata["gpu"]["faiss-gpu"].specifier) == f"=={cpu.version}"


def test_fastreid_is_installed_apart_and_everything_says_the_same_version(setup_metadata):
    # a listed fastreid would pull torch 1.13 through its own metadata
    assert all("fastreid" not in requirements for requirements in setup_metadata.values())
    version = requirements_check.FASTREID_VERSION
    assert f"pip install --no-deps fastreid=={version}" in (REPO / "setup.py").read_text()
    assert f"--no-deps fastreid=={version}" in (REPO / "Makefile").read_text()
    assert metadata.version("fastreid") == version


def test_the_import_check_knows_every_requirement_of_setup(setup_metadata):
    checked = {normalize(d) for d in requirements_check.RUNTIME_MODULES.values()}
    own_steps = {"torch", "torchvision", "cython", "setuptools"}  # the last two build the rank metrics
    assert checked | own_steps == set(setup_metadata[None])


def test_the_checked_module_names_are_those_the_distributions_install():
    for module, dist in requirements_check.RUNTIME_MODULES.items():
        top_level = {Path(f.parts[0]).stem for f in metadata.files(dist) or [] if f.parts}
        assert module in top_level, (module, dist, sorted(top_level)[:10])
