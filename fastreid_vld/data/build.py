"""Train and test loaders for video visible-infrared data sets, on fast-reid's loader machinery.

Batches are dicts: ``images`` [B, T, 3, H, W] float in 0..255 (the model normalises; the
training channel augmentations, done in normalised space as the official code does, can leave
that range slightly),
``targets`` int64 (train: labels 0..C-1 in pid order), ``camids`` int64, ``modalities`` int64
(0 visible, 1 infrared), ``img_paths`` (per tracklet, the T frame paths used).
Train batches: the visible block, then the infrared block, identities in the same order.

fast-reid's data keys either take effect (INPUT.SIZE_TRAIN / SIZE_TEST, INPUT.PADDING.ENABLED /
SIZE, INPUT.FLIP.ENABLED / PROB, INPUT.REA.ENABLED / PROB / VALUE, DATALOADER.NUM_INSTANCE /
NUM_WORKERS) or, set to anything but the value that leaves them off (:data:`TRAIN_KEYS_NOT_HONOURED`),
are refused with one :class:`~fastreid_vld.config.ConfigError` before anything is built.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from fastreid.config import CfgNode
from fastreid.data import build as fastreid_build
from fastreid.data import samplers as fastreid_samplers
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.utils import comm
from PIL import Image
from torch.utils.data import Dataset

from ..config import ConfigError, config_value
from .datasets import VideoCrossModalDataset
from .frame_check import FrameReadError, changed_after_check, more_frames, read_frame
from .samplers import build_cross_modal_sampler
from .tracklets import Tracklet, test_frame_indices, train_frame_indices
from .transforms import TrainFrameAugmentation

logger = logging.getLogger(__name__)


#: What the video pipeline augments tracklet frames with (transforms.py), named in refusals.
VIDEO_AUGMENTATIONS = "tracklet frames are augmented by INPUT.PADDING.*, INPUT.FLIP.*, INPUT.REA.* and INPUT.VVI_AUG.*"
#: fast-reid data keys the video loaders do not implement, read at test and training time:
#: (key, the value that leaves it off, what the video pipeline does instead).
FRAME_KEYS_NOT_HONOURED = (
    ("INPUT.CROP.ENABLED", False, "tracklet frames are resized to INPUT.SIZE_TRAIN / SIZE_TEST, never "
     "crop-resized; training crops come from INPUT.PADDING.ENABLED / SIZE"),
)
#: ... and those read at training time only.
TRAIN_KEYS_NOT_HONOURED = FRAME_KEYS_NOT_HONOURED + (
    ("INPUT.PADDING.MODE", "constant", "tracklet frames are padded with zeros"),
    ("INPUT.CJ.ENABLED", False, f"no colour jitter: {VIDEO_AUGMENTATIONS}"),
    ("INPUT.AFFINE.ENABLED", False, f"no random affine: {VIDEO_AUGMENTATIONS}"),
    ("INPUT.AUTOAUG.ENABLED", False, f"no AutoAugment: {VIDEO_AUGMENTATIONS}"),
    ("INPUT.AUGMIX.ENABLED", False, f"no AugMix: {VIDEO_AUGMENTATIONS}"),
    ("INPUT.RPT.ENABLED", False, f"no random patch: {VIDEO_AUGMENTATIONS}"),
    ("DATALOADER.SAMPLER_TRAIN", "TrainingSampler", "tracklet batches are drawn by DATALOADER.VVI_SAMPLER "
     "(independent, distinct_cameras or balanced)"),
    ("DATALOADER.SET_WEIGHT", [], "tracklet batches are drawn by DATALOADER.VVI_SAMPLER, without per-set weights"),
    ("DATASETS.COMBINEALL", False, "video data sets train on their training split only"),
)


def refuse_keys_not_honoured(cfg: CfgNode, keys: tuple[tuple[str, Any, str], ...]) -> None:
    """One ConfigError for the first of ``keys`` set to another value than the one that leaves it off."""
    for key, off, instead in keys:
        value = config_value(cfg, key)
        if value != off:
            raise ConfigError(f"{key} {value!r}: {instead} (set {key} {off!r} for video data sets)")


def is_vvi_dataset(name: str) -> bool:
    """Whether ``name`` is a video visible-infrared data set of this plugin."""
    dataset = DATASET_REGISTRY.get(name)
    return isinstance(dataset, type) and issubclass(dataset, VideoCrossModalDataset)


#: data sets parsed and checked in this process, by (name, root, options, test_only)
_LOADED: dict[tuple, VideoCrossModalDataset] = {}


def load_vvi_dataset(cfg: CfgNode, name: str, test_only: bool = False) -> VideoCrossModalDataset:
    """Parse and validate data set ``name`` under DATASETS.ROOT once per process (cached, so
    the evaluation hook does not re-read the index files every epoch). ``test_only``: the test
    split alone, the training index files and frames neither read nor checked (evaluation; a
    whole data set already loaded serves too)."""
    options = {"VCM": {"min_frames": cfg.DATASETS.VCM.MIN_FRAMES},
               "BUPTCampus": {"use_auxiliary": cfg.DATASETS.BUPT.AUXILIARY,
                              "drop_rgb_remainder": cfg.DATASETS.BUPT.DROP_RGB_REMAINDER}}.get(name, {})
    key = (name, cfg.DATASETS.ROOT, tuple(sorted(options.items())))
    for loaded in [(*key, False)] + [(*key, True)] * test_only:
        if loaded in _LOADED:
            return _LOADED[loaded]
    dataset = DATASET_REGISTRY.get(name)(root=cfg.DATASETS.ROOT, test_only=test_only, **options)
    if comm.is_main_process():
        logger.info(dataset.summary_table())
    _LOADED[(*key, test_only)] = dataset
    return dataset


def test_frame_rule(cfg: CfgNode, dataset_name: str | None = None) -> str:
    """The test frame rule (tracklets.test_frame_indices) of ``dataset_name``, or, for tracklets of no
    data set, of the first of DATASETS.TESTS: INPUT.TEST_FRAME_RULE where set, else the data set's own
    (HITSZ-VCM's "chunk_first" where the data set is not a video one)."""
    if cfg.INPUT.TEST_FRAME_RULE:
        return cfg.INPUT.TEST_FRAME_RULE
    name = dataset_name or (cfg.DATASETS.TESTS[0] if cfg.DATASETS.TESTS else "")
    return DATASET_REGISTRY.get(name).test_frame_rule if name and is_vvi_dataset(name) else "chunk_first"


def read_frames(paths: list[str], size: tuple[int, int]) -> torch.Tensor:
    """[T, 3, H, W] float 0..255: each frame read as 8-bit RGB by :func:`~.frame_check.read_frame` (its
    policy per PIL mode: infrared grey replicated to 3 channels, 16-bit grey by its high byte,
    transparency on black, 32-bit and float frames refused with a :class:`FrameReadError`) and resized
    bilinearly to ``size`` (H, W), as PIL / torchvision Resize do."""
    frames = []
    for path in paths:
        image = read_frame(path).resize((size[1], size[0]), Image.BILINEAR)
        frames.append(torch.from_numpy(np.asarray(image, dtype=np.float32).copy()).permute(2, 0, 1))
    return torch.stack(frames)


def read_test_frames(frames: Sequence[str], seq_len: int, rule: str,
                     size: tuple[int, int]) -> tuple[list[int], torch.Tensor]:
    """The indices of the ``seq_len`` frames the test ``rule`` chooses from ``frames`` (paths in temporal
    order, any number), and those frames read as :func:`read_frames` does: [T, 3, H, W] float 0..255."""
    indices = test_frame_indices(len(frames), seq_len, rule)
    return indices, read_frames([frames[i] for i in indices], size)


def _failed(message: str, error: FrameReadError) -> dict:
    """The item of a tracklet whose frame did not read: the message (``error``) and the frame, which
    travel from a worker as data (:func:`collate_tracklets`) and :class:`CheckedLoader` raises."""
    return {"error": message, "frame": error.path}


def _item(tracklet: Tracklet, target: int, indices: list[int], frames: torch.Tensor) -> dict:
    return {"images": frames, "targets": target, "camids": tracklet.camid, "modalities": tracklet.modality,
            "img_paths": tuple(tracklet.frames[i] for i in indices)}


class VideoTrainSet(Dataset):
    """Indexed by ``(tracklet index, frame seed)`` pairs from a cross-modal sampler (samplers.py)."""

    def __init__(self, tracklets: list[Tracklet], labels: list[int], seq_len: int, frame_rule: str,
                 size: tuple[int, int], augmentation: TrainFrameAugmentation) -> None:
        self.tracklets, self.labels = tracklets, labels
        self.seq_len, self.frame_rule, self.size, self.augmentation = seq_len, frame_rule, size, augmentation
        self.num_classes = len(set(labels))

    def __len__(self) -> int:
        return len(self.tracklets)

    def __getitem__(self, item: tuple[int, int]) -> dict:
        index, seed = item
        tracklet = self.tracklets[index]
        # the frame seed alone picks the frames (pairs share it); augmentation draws apart
        indices = train_frame_indices(len(tracklet.frames), self.seq_len, self.frame_rule,
                                      np.random.default_rng(seed))
        try:
            frames = read_frames([tracklet.frames[i] for i in indices], self.size)
        except FrameReadError as error:
            return _failed(changed_after_check(error, tracklet), error)
        frames = self.augmentation(frames, tracklet.modality, np.random.default_rng((seed, tracklet.modality)))
        return _item(tracklet, self.labels[index], indices, frames)


class FrameListSet(Dataset):
    """Tracklets given as frame-path lists (any length each), read with a test frame rule:
    ``{"images": [T, 3, H, W], "img_paths": the T paths}`` (engine/predictor.py)."""

    def __init__(self, frame_lists: Sequence[Sequence[str]], seq_len: int, frame_rule: str,
                 size: tuple[int, int]) -> None:
        self.frame_lists, self.seq_len, self.frame_rule, self.size = frame_lists, seq_len, frame_rule, size

    def __len__(self) -> int:
        return len(self.frame_lists)

    def __getitem__(self, index: int) -> dict:
        frames = self.frame_lists[index]
        try:
            indices, images = read_test_frames(frames, self.seq_len, self.frame_rule, self.size)
        except FrameReadError as error:
            return _failed(self._message(index, error), error)
        return {"images": images, "img_paths": tuple(frames[i] for i in indices)}

    def _message(self, index: int, error: FrameReadError) -> str:
        """What the user reads about frame list ``index``, one of whose frames did not read."""
        return str(error)


class VideoTestSet(FrameListSet):
    """Every test tracklet, in order, with the data set's test frame rule and its labels."""

    def __init__(self, tracklets: list[Tracklet], seq_len: int, frame_rule: str, size: tuple[int, int]):
        super().__init__([tracklet.frames for tracklet in tracklets], seq_len, frame_rule, size)
        self.tracklets = tracklets

    def __getitem__(self, index: int) -> dict:
        item = super().__getitem__(index)
        if "error" in item:
            return item
        tracklet = self.tracklets[index]
        return {**item, "targets": int(tracklet.pid), "camids": tracklet.camid, "modalities": tracklet.modality}

    def _message(self, index: int, error: FrameReadError) -> str:
        """A test tracklet's frame was read when the data set loaded: it changed since."""
        return changed_after_check(error, self.tracklets[index])


def collate_tracklets(items: list[dict]) -> dict:
    """Stacks tracklet items; frames that failed to decode in a worker travel as ``errors``, (message,
    frame) pairs, and are raised by :class:`CheckedLoader` in the main process."""
    errors = [(item["error"], item["frame"]) for item in items if "error" in item]
    if errors:
        return {"errors": errors}
    return {"images": torch.stack([item["images"] for item in items]),  # [B, T, 3, H, W]
            **{key: torch.tensor([item[key] for item in items], dtype=torch.int64)
               for key in ("targets", "camids", "modalities") if key in items[0]},
            "img_paths": [item["img_paths"] for item in items]}


class CheckedLoader:
    """Iterates a loader and raises unreadable frames as one clear error in the main process, the
    first in full and the others of its batch counted, instead of a traceback from inside a worker."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader
        self.dataset = loader.dataset

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[dict]:
        for batch in self.loader:
            if "errors" in batch:
                (message, _), others = batch["errors"][0], batch["errors"][1:]
                raise FrameReadError(message + more_frames([frame for _, frame in others], "in the same batch"))
            yield batch


def _loader(cfg: CfgNode, dataset: Dataset, batch_sampler) -> CheckedLoader:
    # fastreid's DataLoaderX, looked up at call time: compat makes it CPU-safe
    return CheckedLoader(fastreid_build.DataLoaderX(
        comm.get_local_rank(), dataset=dataset, batch_sampler=batch_sampler,
        num_workers=cfg.DATALOADER.NUM_WORKERS, collate_fn=collate_tracklets, pin_memory=True))


def build_train_augmentation(cfg: CfgNode) -> TrainFrameAugmentation:
    """The per-frame training augmentation (transforms.py) from fast-reid's keys
    INPUT.PADDING.ENABLED / SIZE, INPUT.FLIP.ENABLED / PROB, INPUT.REA.ENABLED / PROB / VALUE (0..255)
    and the VI-ReID channel augmentations INPUT.VVI_AUG.*."""
    return TrainFrameAugmentation(
        tuple(cfg.INPUT.SIZE_TRAIN), cfg.MODEL.PIXEL_MEAN, cfg.MODEL.PIXEL_STD,
        padding=cfg.INPUT.PADDING.SIZE if cfg.INPUT.PADDING.ENABLED else 0,
        flip_prob=_probability(cfg.INPUT.FLIP), erase_prob=_probability(cfg.INPUT.REA),
        erase_value=cfg.INPUT.REA.VALUE, infrared_gray_prob=cfg.INPUT.VVI_AUG.IR_GRAY_PROB,
        same_across_tracklet=cfg.INPUT.VVI_AUG.SAME_ACROSS_TRACKLET)


def _probability(option: CfgNode) -> float:
    """A fast-reid augmentation's PROB where it is ENABLED, else 0."""
    return option.PROB if option.ENABLED else 0.0


def build_vvi_train_loader(cfg: CfgNode) -> CheckedLoader:
    """Cross-modal identity batches over the training sets of DATASETS.NAMES."""
    refuse_keys_not_honoured(cfg, TRAIN_KEYS_NOT_HONOURED)
    tracklets, keys, paired = [], [], []
    for dataset_index, name in enumerate(cfg.DATASETS.NAMES):
        dataset = load_vvi_dataset(cfg, name)
        train = dataset.train + (dataset.auxiliary or [])
        tracklets += train
        keys += [(dataset_index, t.pid) for t in train]  # pid order within a data set (strings: string order)
        paired.append(getattr(dataset, "paired_train", False))
    if len(set(paired)) > 1:
        raise ValueError(f"DATASETS.NAMES {cfg.DATASETS.NAMES}: cannot mix paired (BUPTCampus) and "
                         "unpaired training sets in one cross-modal sampler")
    label_of = {key: label for label, key in enumerate(sorted(set(keys)))}
    labels = [label_of[key] for key in keys]

    k = cfg.DATALOADER.NUM_INSTANCE  # SOLVER.IMS_PER_BATCH: 2 modalities x k x identities (check_config)
    sampler = build_cross_modal_sampler(cfg.DATALOADER.VVI_SAMPLER, tracklets, labels,
                                        cfg.SOLVER.IMS_PER_BATCH // (2 * k), k, paired=paired[0])
    train_set = VideoTrainSet(tracklets, labels, cfg.INPUT.SEQ_LEN, cfg.INPUT.TRAIN_FRAME_RULE,
                              tuple(cfg.INPUT.SIZE_TRAIN), build_train_augmentation(cfg))
    return _loader(cfg, train_set, sampler)


def build_vvi_test_loader(cfg: CfgNode, dataset_name: str) -> tuple[CheckedLoader, VideoCrossModalDataset]:
    """Every test tracklet of ``dataset_name`` in ``dataset.test`` order (fast-reid's
    InferenceSampler: under torch.distributed, rank r gets the r-th contiguous part)."""
    refuse_keys_not_honoured(cfg, FRAME_KEYS_NOT_HONOURED)  # before the data set is read
    dataset = load_vvi_dataset(cfg, dataset_name, test_only=True)
    test_set = VideoTestSet(dataset.test, cfg.INPUT.SEQ_LEN, test_frame_rule(cfg, dataset_name),
                            tuple(cfg.INPUT.SIZE_TEST))
    return build_inference_loader(cfg, test_set), dataset


def build_inference_loader(cfg: CfgNode, test_set: Dataset) -> CheckedLoader:
    """Batches of TEST.IMS_PER_BATCH tracklets of ``test_set`` in order (fast-reid's InferenceSampler:
    under torch.distributed, rank r gets the r-th contiguous part), DATALOADER.NUM_WORKERS workers."""
    batch_sampler = torch.utils.data.BatchSampler(
        fastreid_samplers.InferenceSampler(len(test_set)), cfg.TEST.IMS_PER_BATCH // comm.get_world_size(), False)
    return _loader(cfg, test_set, batch_sampler)
