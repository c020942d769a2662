"""cfg + weights -> the model in eval, and tracklet features for tensors or frame paths.

    predictor = TrackletPredictor(cfg)                 # MODEL.WEIGHTS: a checkpoint of this config's model
    features = predictor(images)                       # [B, T, 3, H, W] float in 0..255 -> [B, D]
    features = predictor([frames_a, frames_b])         # frame paths, any number per tracklet -> [2, D]
    features = predictor.features(frame_lists)         # many tracklets: batched, workers, progress bar

Frame paths go through the test loader's steps (data/build.py): the configured test frame rule
chooses T of them (``INPUT.TEST_FRAME_RULE``, else the rule of the first of DATASETS.TESTS), each is
read as RGB and resized bilinearly to INPUT.SIZE_TEST; the model normalises. The features are those
``tools/train_net.py --eval-only`` evaluates, on the same frames bit for bit.

:func:`load_eval_model` is what ``--eval-only`` and the tools load a model with: the weights must
be of this config's model, every entry of it (a partly loaded model's numbers mean nothing), and
MODEL.HEADS.NUM_CLASSES 0 takes the checkpoint's class count (no training split needed).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from fastreid.config import CfgNode
from fastreid.modeling import build_model
from tqdm import tqdm

from ..checkpoint import CheckpointReadError, complete_weights, read_model_weights
from ..data.build import (
    FRAME_KEYS_NOT_HONOURED,
    FrameListSet,
    build_inference_loader,
    read_test_frames,
    refuse_keys_not_honoured,
    test_frame_rule,
)

logger = logging.getLogger(__name__)

__all__ = ["TrackletPredictor", "checkpoint_num_classes", "load_eval_model"]

#: state-dict entries whose first dimension is the number of training identities, by head:
#: IMLPHead (its 768-wide classifier), fast-reid's EmbeddingHead (its classifier weight).
CLASSIFIER_ENTRIES = ("heads.classifier.linear.weight", "heads.weight")


def checkpoint_num_classes(weights: dict[str, torch.Tensor], path: str) -> int:
    """The number of identities the ``weights`` read from ``path`` were trained on (their classifier's rows)."""
    for name in CLASSIFIER_ENTRIES:
        if name in weights:
            return int(weights[name].shape[0])
    raise CheckpointReadError(f"MODEL.WEIGHTS {path}: MODEL.HEADS.NUM_CLASSES is 0 and the checkpoint has no "
                              f"classifier entry ({' or '.join(CLASSIFIER_ENTRIES)}) to take it from: set "
                              "MODEL.HEADS.NUM_CLASSES to the training identities")


def load_eval_model(cfg: CfgNode, weights: str | None = None) -> tuple[CfgNode, torch.nn.Module]:
    """(a frozen copy of ``cfg`` for inference, its model on MODEL.DEVICE in eval mode with every entry
    loaded from ``weights``, default MODEL.WEIGHTS). The checkpoint is read once; no backbone
    pretraining is read (the checkpoint replaces it); MODEL.HEADS.NUM_CLASSES 0 takes the checkpoint's."""
    cfg = cfg.clone()
    cfg.defrost()
    if weights is not None:
        cfg.MODEL.WEIGHTS = weights
    state_dict = read_model_weights(cfg.MODEL.WEIGHTS)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    if cfg.MODEL.HEADS.NUM_CLASSES == 0:
        cfg.MODEL.HEADS.NUM_CLASSES = checkpoint_num_classes(state_dict, cfg.MODEL.WEIGHTS)
        logger.info("MODEL.HEADS.NUM_CLASSES %d, from %s", cfg.MODEL.HEADS.NUM_CLASSES, cfg.MODEL.WEIGHTS)
    cfg.freeze()
    model = build_model(cfg)
    model.load_state_dict(complete_weights(model, state_dict, cfg.MODEL.WEIGHTS))
    logger.info("Loaded every entry of %s from MODEL.WEIGHTS %s", type(model).__name__, cfg.MODEL.WEIGHTS)
    return cfg, model.eval()


class TrackletPredictor:
    """Features of tracklets, from a config and its weights (see the module docstring)."""

    def __init__(self, cfg: CfgNode, weights: str | None = None) -> None:
        refuse_keys_not_honoured(cfg, FRAME_KEYS_NOT_HONOURED)  # frames are read as the test loader reads them
        self.cfg, self.model = load_eval_model(cfg, weights)
        self.seq_len = self.cfg.INPUT.SEQ_LEN
        self.size = tuple(self.cfg.INPUT.SIZE_TEST)  # (H, W)
        self.frame_rule = test_frame_rule(self.cfg)

    @torch.no_grad()
    def __call__(self, tracklets: torch.Tensor | Sequence[Sequence[str]]) -> torch.Tensor:
        """[B, T, 3, H, W] float 0..255 images, or B lists of frame paths -> [B, D] float32 features (CPU)."""
        if isinstance(tracklets, torch.Tensor):
            images = self._checked(tracklets)
        else:
            images = torch.stack([self.read(frames) for frames in tracklets])
        return self.model({"images": images.to(self.model.device)}).float().cpu()

    def read(self, frames: Sequence[str]) -> torch.Tensor:
        """One tracklet's frame paths (temporal order, any number) -> [T, 3, H, W] float 0..255."""
        return read_test_frames(frames, self.seq_len, self.frame_rule, self.size)[1]

    def features(self, frame_lists: Sequence[Sequence[str]], description: str = "features") -> torch.Tensor:
        """[N, D] float32 features of N tracklets' frame lists, in order: TEST.IMS_PER_BATCH tracklets a batch,
        read by DATALOADER.NUM_WORKERS workers, with a progress bar."""
        loader = build_inference_loader(self.cfg, FrameListSet(frame_lists, self.seq_len, self.frame_rule,
                                                               self.size))
        return torch.cat([self(batch["images"]) for batch in tqdm(loader, desc=description, unit="batch")])

    def _checked(self, images: torch.Tensor) -> torch.Tensor:
        expected = (self.seq_len, 3, *self.size)
        if images.dim() != 5 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected tracklet images [B, {', '.join(map(str, expected))}] (INPUT.SEQ_LEN frames "
                             f"of INPUT.SIZE_TEST, float 0..255), got {list(images.shape)}")
        return images.float()
