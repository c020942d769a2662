"""fastreid_vld: VLD (video-level language-driven VI-ReID, TIFS 2025) as a fast-reid plugin.

``make install`` installs the tested stack (requirements.txt) and every step below; this file
serves ``pip install -e .``, and is kept consistent with requirements.txt by tests/test_install.py:

- torch, torchvision and open_clip_torch are pinned (``==``) to the tested versions: an unpinned
  torch pulls several GB of CUDA packages, ``fastreid_vld.compat`` adapts exactly these releases,
  and the model is built from open_clip's private tower builders and blocks. Every other
  requirement is a lower bound at the tested version (a public API that newer releases keep).
- fastreid==1.4.0 is a runtime requirement that is NOT listed here: its metadata pins torch 1.13,
  so it is installed apart, with ``pip install --no-deps fastreid==1.4.0``, and adapted to torch 2
  at runtime by ``fastreid_vld.compat``. ``import fastreid_vld`` says so when it is missing.
- faiss is one of two extras, ``cpu`` (faiss-cpu) or ``gpu`` (faiss-gpu): both wheels install
  the same ``faiss`` module, so they must never be installed together.
- fast-reid's Cython rank metrics are compiled, after the install, by
  ``python -c "from fastreid_vld.compat import build_rank_extensions as b; b()"`` (Makefile).

See README, "Install".
"""

from setuptools import find_packages, setup

setup(
    name="fastreid_vld",
    version="0.1.0",
    description="VLD video visible-infrared person re-identification as a fast-reid plugin",
    packages=find_packages(include=["fastreid_vld", "fastreid_vld.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch==2.13.0",
        "torchvision==0.28.0",
        "open_clip_torch==3.3.0",
        "numpy>=2.4.6",
        "pillow>=13.0.0",
        "tqdm>=4.70.1",
        # what fastreid 1.4.0 really imports (fastreid itself: pip install --no-deps fastreid==1.4.0)
        "yacs>=0.1.8",
        "termcolor>=3.3.0",
        "scikit-learn>=1.9.1",
        "tabulate>=0.10.0",
        "tensorboard>=2.21.0",
        # fastreid_vld/engine/curves.py (tools/plot_run.py: a run's curves as a picture)
        "matplotlib>=3.11.2",
        # fastreid_vld.compat.build_rank_extensions compiles fast-reid's rank metrics with these
        "Cython>=3.3.1",
        "setuptools>=70",
    ],
    extras_require={
        # one of the two: both install the module `faiss` (faiss-gpu has the CPU indexes too)
        "cpu": ["faiss-cpu==1.15.1"],
        "gpu": ["faiss-gpu==1.15.1"],
        # tools/export.py: torch.onnx.export(dynamo=True) and the onnxruntime check of each file
        "export": ["onnx==1.23.2", "onnxscript==0.7.2", "onnxruntime==1.32.0"],
        "dev": ["pytest==9.2.0", "ruff==0.17.6"],
    },
)
