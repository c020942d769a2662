"""fastreid_vld: VLD (video-level language-driven VI-ReID, TIFS 2025) as a fast-reid plugin.

fastreid==1.4.0 is a runtime requirement that is NOT listed here: its metadata pins
torch 1.13, so it is installed with ``pip install --no-deps fastreid==1.4.0`` and adapted
to torch 2.x at runtime by ``fastreid_vld.compat`` (see README, "Dependencies").
"""

from setuptools import find_packages, setup

setup(
    name="fastreid_vld",
    version="0.1.0",
    description="VLD video visible-infrared person re-identification as a fast-reid plugin",
    packages=find_packages(include=["fastreid_vld", "fastreid_vld.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "open_clip_torch>=2.23",
        "numpy>=1.24",
        "pillow",
        "tqdm",
        "yacs",
        "termcolor",
        "scikit-learn",
        "faiss-cpu",
        "tabulate",
        "tensorboard",
        "Cython>=3",
    ],
    extras_require={"gpu": ["faiss-gpu"]},
)
