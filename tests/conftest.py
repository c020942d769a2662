"""Shared test helpers. Importing fastreid_vld first adapts fast-reid to this stack."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import fastreid_vld  # noqa: F401

# isort: split
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# the decoded-frames cache of the data sets the tests write: beside them, not in the user's home
os.environ.setdefault("FASTREID_VLD_CACHE", os.path.join(os.environ.get("TMPDIR", "/tmp"),
                                                         f"fastreid_vld_test_cache_{os.getpid()}"))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def run_python(*args: str, env: dict[str, str] | None = None, timeout: int = 600,
               cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run this environment's python with ``args`` in a fresh process; output captured."""
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    """A TCP port of the loopback that is free now (bound to port 0, the system picks it), for a process
    group's rendezvous; another process may still take it before the run binds it, rarely."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load_tool(name: str) -> ModuleType:
    """``tools/<name>.py`` as a module, to call its ``main(argv)`` in this process (faster than
    :func:`run_python`; a user error is its ``SystemExit("error: ...")``)."""
    spec = importlib.util.spec_from_file_location(f"tools_{name}", REPO / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def ieee_floats():
    """Each test starts and ends with IEEE subnormal arithmetic, whatever a tool in it set (FLUSH_DENORMAL):
    the parity tests compare with the official code run the same way."""
    torch.set_flush_denormal(False)
    yield
    torch.set_flush_denormal(False)
