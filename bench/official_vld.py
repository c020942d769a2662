"""The official VLD code (github Visuang/VLD), for the benchmarks that measure against it.

None of its code is in this repository. ``--official DIR`` names a checkout the user made
(``git clone https://github.com/Visuang/VLD``); :func:`scratch_copy` copies its ``network``,
``core`` and ``tools`` packages to a scratch folder outside the repository and patches them only
to run on the CPU (:data:`CPU_PATCHES`); :func:`official_base` builds its ``core.base.Base``
(model, losses, AdamW) with the CLIP it would download replaced by a given random ViT-B/16
state dict. Its weights reach this project's model through ``convert_official_state_dict``.
"""

from __future__ import annotations

import fastreid_vld  # noqa: F401  (first: torchvision's CPU shim, before open_clip and the official code)

# isort: split
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import torch

#: file -> (official text, CPU text): every change made to the scratch copy, each required to match.
CPU_PATCHES = {
    "network/model.py": [("tokenize(ctx_init).cuda()", "tokenize(ctx_init)"),
                         ('clip_model.to("cuda")', 'clip_model.to("cpu")')],
    "core/base.py": [("torch.device('cuda')", "torch.device('cpu')")],
}
#: The official recipe's arguments (main.py defaults; HITSZ-VCM has 500 training identities).
OFFICIAL_ARGS = {"learning_rate": 0.000025, "lr_times": 25, "weight_decay": 1e-4, "img_h": 288, "img_w": 144,
                 "sequence_length": 6, "weight_a": 0.08, "weight_b": 0.4, "weight_c": 1.0, "STH_start_layer": 9,
                 "is_STA": True}


def scratch_copy(official: Path, scratch: Path, device: str) -> Path:
    """Copy the official packages into ``scratch/VLD``, with :data:`CPU_PATCHES` applied when
    ``device`` is "cpu" (the official code runs on CUDA as it is); returns that folder."""
    official = Path(official).expanduser().resolve()
    if not (official / "network" / "model.py").is_file():
        raise SystemExit(f"error: --official {official}: expected a checkout of github.com/Visuang/VLD "
                         "(network/model.py, core/, tools/)")
    target = Path(scratch) / "VLD"
    shutil.rmtree(target, ignore_errors=True)
    for package in ("network", "core", "tools"):
        shutil.copytree(official / package, target / package)
    for relative, patches in CPU_PATCHES.items() if device == "cpu" else ():
        file = target / relative
        text = file.read_text()
        for before, after in patches:
            if before not in text:
                raise SystemExit(f"error: {official / relative}: expected {before!r} (the official code at 69688ef); "
                                 "this checkout differs, so the CPU patch does not apply")
            text = text.replace(before, after)
        file.write_text(text)
    return target


def random_clip_state_dict(seed: int) -> dict[str, torch.Tensor]:
    """A random CLIP ViT-B/16 (QuickGELU) state dict with OpenAI's key names, as its JIT archive holds."""
    import open_clip
    torch.manual_seed(seed)
    return open_clip.create_model("ViT-B-16", pretrained=None, force_quick_gelu=True).state_dict()


def official_base(vld_dir: Path, clip_state_dict: dict[str, torch.Tensor], num_classes: int, seed: int,
                  size: tuple[int, int]):
    """The official ``core.base.Base`` (its Model, criteria, AdamW groups) for frames of ``size``
    (H, W), CLIP from ``clip_state_dict``."""
    sys.path.insert(0, str(vld_dir))
    import network.model as official_model
    from network.clip import clip

    def load_clip(name: str, h_resolution: int, w_resolution: int, stride: int):  # instead of downloading
        model = clip.build_model(dict(clip_state_dict), h_resolution, w_resolution, stride)
        return model, model.state_dict()

    official_model.load_clip_to_cpu = load_clip
    from core.base import Base
    torch.manual_seed(seed)
    config = SimpleNamespace(**{**OFFICIAL_ARGS, "pid_num": num_classes, "output_path": str(vld_dir / "output"),
                                "steps": 1, "img_h": size[0], "img_w": size[1]})
    return Base(config)


def official_train_step(base, images: torch.Tensor, targets: torch.Tensor) -> float:
    """One official training step (``core.video_train.foward_video``, forward, backward, AdamW) on
    ``images`` [2B, T, 3, H, W] (normalised; visible block then infrared block) and ``targets`` [2B];
    returns its total loss."""
    from core.video_train import foward_video

    half = images.shape[0] // 2
    videos = images.flatten(1, 2)  # [2B, T*3, H, W]: the official loader's layout
    batch = (videos[:half], videos[half:], targets[:half], targets[half:])
    meter = foward_video(SimpleNamespace(next_one=lambda: batch), base, _Meter(),
                         torch.amp.GradScaler("cuda", enabled=False))
    return sum(meter.values.values())


class _Meter:
    """Collects the loss terms ``foward_video`` reports (already weighted)."""

    def __init__(self) -> None:
        self.values: dict[str, float] = {}

    def update(self, values: dict[str, torch.Tensor]) -> None:
        self.values = {key: float(value) for key, value in values.items()}
