"""CLIP towers for VLD: open_clip's own image and text towers, built from the config, and
CLIP weights read from OpenAI JIT archives, open_clip checkpoints or open_clip pretrained tags.

The STP backbone takes the image tower, the IMLP head the text tower; both come from the
open_clip architecture ``MODEL.CLIP.NAME`` (a name such as ``ViT-B-16`` or the path of an
open_clip JSON model config), with the image tower built at the training input size
(``INPUT.SIZE_TRAIN``, 288x144 in the paper: an 18x9 patch grid). Weights on a square
grid are resized to that grid as the official code does (``MODEL.CLIP.POS_EMBED_INTERPOLATION``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import open_clip
import torch
import torch.nn.functional as F
from fastreid.config import CfgNode
from open_clip.model import _build_text_tower, _build_vision_tower
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "ClipWeightsError", "clip_model_config", "build_clip_image_tower", "build_clip_text_tower",
    "read_clip_state_dict", "load_clip_weights", "resize_grid_pos_embed",
]

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Keys of an OpenAI / open_clip CLIP state dict that belong to the text tower (top level).
TEXT_TOWER_KEYS = ("token_embedding.", "positional_embedding", "transformer.", "ln_final.", "text_projection")


class ClipWeightsError(FileNotFoundError):
    """CLIP weights named by the config cannot be found, downloaded or read."""


def clip_model_config(cfg: CfgNode) -> dict:
    """The open_clip model config (``embed_dim``, ``vision_cfg``, ``text_cfg``) of
    ``MODEL.CLIP.NAME``, with the image size set to ``INPUT.SIZE_TRAIN`` (H, W)."""
    name = cfg.MODEL.CLIP.NAME
    if name.endswith(".json"):
        config = json.loads(_model_config_file(name).read_text())
    else:
        config = open_clip.get_model_config(name)
        if config is None:
            raise ValueError(f"MODEL.CLIP.NAME {name!r} is neither an open_clip architecture "
                             f"(open_clip.list_models()) nor a .json model config file")
    if "embed_dim" not in config or "vision_cfg" not in config or "text_cfg" not in config:
        raise ValueError(f"MODEL.CLIP.NAME {name!r}: expected an open_clip CLIP config with "
                         "embed_dim, vision_cfg and text_cfg")
    config["vision_cfg"]["image_size"] = tuple(cfg.INPUT.SIZE_TRAIN)
    return config


def _model_config_file(name: str) -> Path:
    """A JSON model config path: as given (absolute or from the working directory), else
    relative to the repository that holds ``configs/`` (for runs started elsewhere)."""
    for path in (Path(name), REPO_ROOT / name):
        if path.is_file():
            return path
    raise FileNotFoundError(f"MODEL.CLIP.NAME: open_clip model config {name} not found "
                            f"(looked in {Path.cwd()} and {REPO_ROOT})")


def build_clip_image_tower(cfg: CfgNode) -> nn.Module:
    """open_clip's VisionTransformer of ``MODEL.CLIP.NAME`` at ``INPUT.SIZE_TRAIN``, random init."""
    config = clip_model_config(cfg)
    vision = config["vision_cfg"]
    if (isinstance(vision.get("layers"), (list, tuple)) or vision.get("timm_model_name")
            or vision.get("attentional_pool") or vision.get("pool_type", "tok") != "tok"):
        raise ValueError(f"MODEL.CLIP.NAME {cfg.MODEL.CLIP.NAME!r}: the STP backbone needs a ViT image tower "
                         "pooled by its class token")
    return _build_vision_tower(config["embed_dim"], vision, quick_gelu=_quick_gelu(cfg, config))


def build_clip_text_tower(cfg: CfgNode) -> nn.Module:
    """open_clip's TextTransformer of ``MODEL.CLIP.NAME``, random init."""
    config = clip_model_config(cfg)
    if config["text_cfg"].get("hf_model_name"):
        raise ValueError(f"MODEL.CLIP.NAME {cfg.MODEL.CLIP.NAME!r}: IMLP needs a CLIP text transformer, "
                         "not a Hugging Face text model")
    return _build_text_tower(config["embed_dim"], config["text_cfg"], quick_gelu=_quick_gelu(cfg, config))


def _quick_gelu(cfg: CfgNode, config: dict) -> bool:
    """MODEL.CLIP.QUICK_GELU, or the architecture's own setting (``ViT-B-16-quickgelu``)."""
    return bool(cfg.MODEL.CLIP.QUICK_GELU or config.get("quick_gelu", False))


def read_clip_state_dict(cfg: CfgNode, path: str, path_key: str) -> dict[str, torch.Tensor]:
    """The CLIP state dict (OpenAI key names) from ``path``, or, when ``path`` is empty, from
    the open_clip pretrained tag ``MODEL.CLIP.PRETRAINED`` (downloaded by open_clip).

    ``path`` may be an OpenAI JIT archive (``ViT-B-16.pt``) or an open_clip checkpoint
    (``.pt``/``.bin``/``.safetensors``; ``state_dict`` and ``module.`` wrappers are accepted).
    The tensors keep the dtype the file stores (fp16 in OpenAI's archives): :func:`load_clip_weights`
    resizes the positional embedding in it, as the official code does, and loads into the fp32 tower.
    ``path_key`` names the config key ``path`` came from, for the error messages."""
    if not path:
        path = _download_tagged_weights(cfg, path_key)
    file = Path(path).expanduser()
    if not file.is_file():
        where = "" if file.is_absolute() else f" (in {Path.cwd()})"
        raise ClipWeightsError(
            f"{path_key}: CLIP weights file {file} not found{where}. Put OpenAI's {cfg.MODEL.CLIP.NAME}.pt "
            f"(or an open_clip checkpoint) there, set {path_key} '' to download the open_clip tag "
            f"MODEL.CLIP.PRETRAINED ({cfg.MODEL.CLIP.PRETRAINED!r}), or set MODEL.BACKBONE.PRETRAIN False "
            "to start from random weights")
    logger.info("Reading CLIP weights from %s", file)
    try:
        state_dict = torch.jit.load(str(file), map_location="cpu").state_dict()  # OpenAI JIT archive
    except RuntimeError:
        try:
            state_dict = open_clip.factory.load_state_dict(str(file))
        except Exception as error:
            raise ClipWeightsError(f"{path_key}: cannot read {file} as an OpenAI JIT archive or an "
                                   f"open_clip checkpoint ({error})") from error
    for key in ("input_resolution", "context_length", "vocab_size"):  # JIT archive constants
        state_dict.pop(key, None)
    if any(key.startswith("text.") for key in state_dict):  # open_clip CustomTextCLIP layout
        state_dict = {key.removeprefix("text."): value for key, value in state_dict.items()}
    return state_dict


def _download_tagged_weights(cfg: CfgNode, path_key: str) -> str:
    name, tag = cfg.MODEL.CLIP.NAME, cfg.MODEL.CLIP.PRETRAINED
    pretrained_cfg = get_pretrained_cfg(name, tag) if tag else {}
    if not pretrained_cfg:
        raise ClipWeightsError(f"{path_key} is empty and MODEL.CLIP.PRETRAINED {tag!r} is not an open_clip "
                               f"tag of {name!r} (open_clip.list_pretrained()): set {path_key} to a "
                               "local CLIP weights file or MODEL.BACKBONE.PRETRAIN False")
    try:
        return download_pretrained(pretrained_cfg)
    except Exception as error:
        raise ClipWeightsError(f"{path_key} is empty and the open_clip weights {name}/{tag} could not be "
                               f"downloaded ({error}): set {path_key} to a local CLIP weights file") from error


def load_clip_weights(tower: nn.Module, state_dict: dict[str, torch.Tensor], tower_name: str,
                      interpolation: str, source: str) -> None:
    """Load the ``tower_name`` ("image" or "text") part of a CLIP state dict into an open_clip
    tower, every tower key required, each value cast to the tower's dtype; the image positional
    embedding is resized to the tower's grid first, in the state dict's dtype."""
    if tower_name == "image":
        part = {key.removeprefix("visual."): value for key, value in state_dict.items() if key.startswith("visual.")}
        if "positional_embedding" in part:
            part["positional_embedding"] = resize_grid_pos_embed(
                part["positional_embedding"], tuple(tower.grid_size), interpolation)
    else:
        part = {key: value for key, value in state_dict.items() if key.startswith(TEXT_TOWER_KEYS)}
    expected = tower.state_dict()
    problems = [f"missing {key}" for key in expected if key not in part]
    problems += [f"unexpected {key}" for key in part if key not in expected]
    problems += [f"{key} {tuple(part[key].shape)} instead of {tuple(value.shape)}"
                 for key, value in expected.items() if key in part and part[key].shape != value.shape]
    if problems:
        raise ClipWeightsError(f"{source}: these weights do not match the CLIP {tower_name} tower of MODEL.CLIP.NAME "
                               f"({len(problems)} differences, e.g. {'; '.join(problems[:3])})")
    tower.load_state_dict(part)


def resize_grid_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int], interpolation: str) -> torch.Tensor:
    """[1 + g*g, W] class + square-grid positional embedding -> [1 + H*W, W] on the (H, W)
    ``grid``, interpolated as the official VLD code does (``bilinear``, corners not aligned), in
    ``pos_embed``'s dtype (officially the archive's fp16, on the CPU: network/clip/model.py:435, 469)."""
    num_grid = grid[0] * grid[1]
    if pos_embed.shape[0] == num_grid + 1:
        return pos_embed
    side = int(round((pos_embed.shape[0] - 1) ** 0.5))
    if side * side != pos_embed.shape[0] - 1:
        raise ClipWeightsError(f"positional embedding of {pos_embed.shape[0]} tokens is not a class token "
                               f"plus a square grid: cannot resize it to {grid}")
    logger.info("Resizing the positional embedding from a %dx%d to a %dx%d grid (%s)",
                side, side, grid[0], grid[1], interpolation)
    cls_token, patches = pos_embed[:1], pos_embed[1:]
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)   # [1, W, g, g]
    patches = F.interpolate(patches, size=grid, mode=interpolation)     # [1, W, H, W]
    patches = patches.permute(0, 2, 3, 1).reshape(num_grid, -1)         # [H*W, W]
    return torch.cat([cls_token, patches], dim=0)
