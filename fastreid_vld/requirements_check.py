"""What ``import fastreid_vld`` needs installed, checked before anything heavy is imported.

fastreid 1.4.0 cannot be a requirement in setup.py (its metadata pins torch 1.13), so
``pip install -e .`` alone leaves it out, and installing it with its dependencies replaces
torch 2 by torch 1.13. Without this check the import then dies deep inside fast-reid or
``compat.py`` with a bare ModuleNotFoundError. :func:`check_requirements` looks for every
part without importing any (``importlib.util.find_spec``, ``importlib.metadata``) and raises
ONE ImportError that names each missing install step.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata

FASTREID_VERSION = "1.4.0"  # the release compat.py adapts
TORCH_VERSION = "2.13.0"  # the tested stack (requirements.txt, setup.py)
TORCHVISION_VERSION = "0.28.0"

#: module -> distribution: the other requirements of setup.py (torch and torchvision, faiss and
#: fastreid have steps of their own below; Cython and setuptools only build the rank metrics).
RUNTIME_MODULES = {
    "open_clip": "open_clip_torch",
    "numpy": "numpy",
    "PIL": "pillow",
    "tqdm": "tqdm",
    "yacs": "yacs",
    "termcolor": "termcolor",
    "sklearn": "scikit-learn",
    "tabulate": "tabulate",
    "tensorboard": "tensorboard",
    "matplotlib": "matplotlib",
}

TORCH_STEP = f"`pip install torch=={TORCH_VERSION} torchvision=={TORCHVISION_VERSION}` (the CPU or a CUDA build)"
FASTREID_STEP = (f"installed apart with `pip install --no-deps fastreid=={FASTREID_VERSION}` "
                 "(its metadata pins torch 1.13)")
MAKE_INSTALL = '`make install` does every step (README, "Install")'


def check_requirements() -> None:
    """Raise one ImportError naming every missing install step; return when nothing is missing."""
    problems = missing_steps()
    if not problems:
        return
    if len(problems) == 1:
        message = f"fastreid_vld needs {problems[0]}; {MAKE_INSTALL}"
    else:
        message = "fastreid_vld needs:\n" + "".join(f"  - {p}\n" for p in problems) + MAKE_INSTALL
    raise ImportError(message, name="fastreid_vld")


def missing_steps() -> list[str]:
    """One line per missing install step, in the order of the install."""
    problems = []
    torch_version = _version("torch")  # None without metadata (a source build): cannot be told
    if not (_found("torch") and _found("torchvision")):
        problems.append(f"torch {TORCH_VERSION} and torchvision {TORCHVISION_VERSION}: {TORCH_STEP}")
    elif torch_version is not None and _major(torch_version) < 2:
        problems.append(f"torch 2 (tested: {TORCH_VERSION}), not torch {torch_version}: {TORCH_STEP}; "
                        "torch 1.13 comes with fastreid's own dependencies: install fastreid with --no-deps")
    missing = [dist for module, dist in RUNTIME_MODULES.items() if not _found(module)]
    if missing:
        problems.append(f"{', '.join(missing)}: `pip install -e .` in the checkout "
                        "(or `pip install -r requirements.txt`)")
    if not _found("faiss"):
        problems.append("faiss: `pip install -e .[cpu]` (faiss-cpu) or `pip install -e .[gpu]` (faiss-gpu), "
                        "one of the two")
    if not _found("fastreid"):
        problems.append(f"fastreid {FASTREID_VERSION}, {FASTREID_STEP}")
    else:
        fastreid_version = _version("fastreid")
        # no distribution metadata: a source checkout on sys.path, whose version cannot be told
        if fastreid_version is not None and fastreid_version != FASTREID_VERSION:
            problems.append(f"fastreid {FASTREID_VERSION}, not fastreid {fastreid_version} "
                            f"(compat.py adapts {FASTREID_VERSION}): {FASTREID_STEP}")
    return problems


def _found(module: str) -> bool:
    """Whether ``module`` (a top-level name) can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a finder that refuses the name, a broken __spec__
        return False


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 2  # not a release number: do not refuse it
