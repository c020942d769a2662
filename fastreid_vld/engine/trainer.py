"""VLDTrainer: fast-reid's DefaultTrainer with only the builders that must differ."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from fastreid.config import CfgNode
from fastreid.data.build import _test_loader_from_config, build_reid_test_loader
from fastreid.engine import DefaultTrainer, hooks
from fastreid.modeling import build_model
from fastreid.utils import comm
from fastreid.utils.events import CommonMetricPrinter, EventWriter

from ..checkpoint import check_same_model
from ..config import check_config, check_config_against_data
from ..data import build_vvi_test_loader, build_vvi_train_loader, is_vvi_dataset
from ..data.build import (
    FRAME_KEYS_NOT_HONOURED,
    TRAIN_KEYS_NOT_HONOURED,
    load_vvi_dataset,
    refuse_keys_not_honoured,
)
from ..data.image_sets import image_sets_under
from ..data.samplers import CrossModalSampler
from ..distributed import broadcast_module
from ..evaluation.vvi_evaluator import VVIEvaluator
from ..modeling.global_batch import batch_norm_layers
from ..solver import VLD_SCHEDULER, build_vld_lr_scheduler, build_vld_optimizer
from .defaults import log_to_files_only
from .hooks import (
    BestCheckpointer,
    CurvesWriter,
    EventsWriter,
    IterationTimer,
    MetricsWriter,
    RunRecordWriter,
    ScalarHistories,
    run_every,
)

logger = logging.getLogger(__name__)


class VLDTrainer(DefaultTrainer):
    """fast-reid's trainer (hooks, checkpointer, writers, EvalHook, DDP), plus:

    - ``SOLVER.ITERS_PER_EPOCH`` fixes the epoch length (the official VLD schedule counts
      epochs of 200 iterations); 0 keeps fast-reid's ``len(train set) // IMS_PER_BATCH``;
    - the VLD meta-architecture gets the official optimizer groups, and SOLVER.SCHED
      ``WarmupCosineEpochLR`` the official epoch schedule (solver.py);
    - ``SOLVER.AMP.DTYPE`` chooses the autocast dtype of mixed-precision steps (float16 with a
      gradient scaler whose state checkpoints carry, on CUDA and on the CPU);
    - video visible-infrared data sets (``fastreid_vld.data``) get cross-modal tracklet
      loaders; fast-reid's image data sets keep fast-reid's loaders, read from DATASETS.ROOT
      (fast-reid: FASTREID_DATASETS only), a missing folder one error naming it;
    - test loaders use ``DATALOADER.NUM_WORKERS`` (fast-reid's always start 4 workers);
    - losses, learning rate and ETA are written every ``SOLVER.LOG_PERIOD`` iterations;
    - ``model_best.pth`` is kept as the official VLD code keeps its best model: after every
      evaluation, ties going to the later epoch (:class:`BestCheckpointer`), and a resumed run
      keeps it until it is beaten;
    - checkpoints carry the cross-modal sampler's seed and the float16 gradient scaler, and
      ``--resume`` continues the sampler's stream after the batches already trained on: on the CPU
      a resumed run ends with the weights of the uninterrupted one (tests/test_reliability.py);
    - under torch.distributed ``SOLVER.IMS_PER_BATCH`` stays the global batch: every process takes
      its share of the same batches and the models' batch-level terms run over the whole batch
      (fastreid_vld/distributed.py), so N processes train the one-process objective
      (tests/test_distributed.py).
    """

    def __init__(self, cfg: CfgNode) -> None:
        self._fixed_iters_per_epoch = cfg.SOLVER.ITERS_PER_EPOCH
        check_config_and_data(cfg)
        super().__init__(cfg)
        if cfg.SOLVER.AMP.ENABLED:
            self._trainer.amp_dtype = getattr(torch, cfg.SOLVER.AMP.DTYPE)
            grad_scaler = self._trainer.prepare_grad_scaler()
            if grad_scaler.is_enabled():  # float16: its scale and growth count resume with the run
                self.checkpointer.checkpointables["grad_scaler"] = grad_scaler
        log_local_batch_norms(self.model)
        self.checkpointer.checkpointables["scalar_histories"] = next(
            hook for hook in self._hooks if isinstance(hook, ScalarHistories))
        loader = getattr(self._trainer.data_loader, "loader", None)  # a cross-modal CheckedLoader
        self._train_sampler = getattr(loader, "batch_sampler", None)
        if isinstance(self._train_sampler, CrossModalSampler):
            self.checkpointer.checkpointables["train_sampler"] = self._train_sampler

    @property
    def iters_per_epoch(self) -> int:
        return self._iters_per_epoch

    @iters_per_epoch.setter
    def iters_per_epoch(self, from_train_set_length: int) -> None:
        # DefaultTrainer.__init__ assigns len(train set) // batch, then builds the scheduler,
        # max_iter and the hooks from this attribute.
        self._iters_per_epoch = self._fixed_iters_per_epoch or from_train_set_length

    def resume_or_load(self, resume: bool = True) -> None:
        """fast-reid's resume (weights, optimizer, scheduler, epoch from the newest readable
        checkpoint), plus the best metric so far for :class:`BestCheckpointer` and the training
        stream where the checkpoint left it."""
        if not (resume and self.resumable()):
            self.checkpointer.load(self.cfg.MODEL.WEIGHTS, checkpointables=[])
            return
        # as fast-reid's Checkpointer.resume_or_load, with the newest readable file looked up once
        newest = self.checkpointer.get_checkpoint_file()
        if newest:
            check_same_model(self.model, newest, self.optimizer)
        checkpoint = self.checkpointer.load(newest)  # "": none readable, nothing loaded (fast-reid's behaviour)
        self.start_epoch = checkpoint.get("epoch", -1) + 1
        for hook in self._hooks:
            if isinstance(hook, BestCheckpointer):
                hook.restore(checkpoint)
        if isinstance(self._train_sampler, CrossModalSampler):  # seed loaded with the checkpoint
            self._train_sampler.batches_done = self.start_epoch * self.iters_per_epoch
            self._trainer._data_loader_iter = iter(self._trainer.data_loader)

    def resumable(self) -> bool:
        """Whether ``--resume`` has a checkpoint to continue from: fast-reid's ``last_checkpoint`` or,
        where that file was deleted, any ``.pth`` of OUTPUT_DIR (fast-reid then trained from scratch
        and overwrote them; :meth:`resume_or_load` takes the newest readable one)."""
        save_dir = Path(self.checkpointer.save_dir)
        return self.checkpointer.has_checkpoint() or any(save_dir.glob("*.pth"))

    def train(self):
        """fast-reid's training loop; a resumed run whose last checkpoint is the final one has nothing left."""
        if self.start_epoch >= self.max_epoch:
            logger.info("Training already finished (epoch %d of %d in %s): nothing left to resume",
                        self.start_epoch, self.max_epoch, self.cfg.OUTPUT_DIR)
            return {}
        return super().train()

    def build_hooks(self) -> list[hooks.HookBase]:
        """fast-reid's hooks, with :class:`BestCheckpointer` for its checkpointer, :class:`RunRecordWriter`
        for its writers (every SOLVER.LOG_PERIOD iterations, fast-reid: 200; every evaluation in the files)
        and :class:`IterationTimer` for its timer (a summary that counts what it timed); first
        :class:`ScalarHistories` (what a resumed run's smoothed scalars continue from), and last, on the
        main process, :class:`CurvesWriter` (OUTPUT_DIR/curves.png). The writers go before the
        checkpointer (fast-reid: after it): an epoch's lines are in metrics.json before its checkpoint,
        the largest write, can fill the disk."""
        adapted = [ScalarHistories(), *(self._adapted(hook) for hook in super().build_hooks())]
        if not comm.is_main_process():  # no checkpointer, no writers
            return adapted
        return _record_before_checkpoints(adapted) + [CurvesWriter(self.cfg.OUTPUT_DIR)]

    def build_writers(self) -> list[EventWriter]:
        """fast-reid's writers (console line, metrics.json, tensorboard events), the file writers failing
        as one error naming the file, metrics.json keeping every line written before
        (:class:`MetricsWriter`, :class:`EventsWriter`)."""
        return [CommonMetricPrinter(self.max_iter), MetricsWriter(str(Path(self.cfg.OUTPUT_DIR) / "metrics.json")),
                EventsWriter(self.cfg.OUTPUT_DIR)]

    def after_train(self) -> None:
        """fast-reid's: every hook's ``after_train`` (the last evaluation and checkpoints, the files closed,
        the curves), here each one even where an earlier one failed, and the first failure raised after
        them, unless the training had failed: its error stays the one reported (:func:`run_every`)."""
        self.storage.iter = self.iter
        run_every([hook.after_train for hook in self._hooks], "A hook's after_train")

    def _adapted(self, hook: hooks.HookBase) -> hooks.HookBase:
        if type(hook) is hooks.PeriodicCheckpointer:
            return BestCheckpointer(self.checkpointer, self.cfg.SOLVER.CHECKPOINT_PERIOD)
        if type(hook) is hooks.PeriodicWriter:
            return RunRecordWriter(hook._writers, self.cfg.SOLVER.LOG_PERIOD)
        if type(hook) is hooks.IterationTimer:
            return IterationTimer()
        return hook

    @classmethod
    def build_model(cls, cfg: CfgNode) -> torch.nn.Module:
        """fast-reid's model; its printout in log.txt and a parameter count on the console (fast-reid
        printed the whole model there); under torch.distributed every process holds process 0's
        weights, the frozen ones too (a random-init CLIP text tower would differ between processes
        seeded SEED + rank)."""
        model = build_model(cfg)
        log_model(model)
        broadcast_module(model)
        return model

    @classmethod
    def build_optimizer(cls, cfg: CfgNode, model: torch.nn.Module):
        """VLD: the official parameter groups (solver.py); other models: fast-reid's."""
        if cfg.MODEL.META_ARCHITECTURE == "VLD":
            return build_vld_optimizer(cfg, model)
        return super().build_optimizer(cfg, model)

    @classmethod
    def build_lr_scheduler(cls, cfg: CfgNode, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
        """SOLVER.SCHED WarmupCosineEpochLR: VLD's epoch schedule (solver.py); others: fast-reid's."""
        if cfg.SOLVER.SCHED == VLD_SCHEDULER:
            return build_vld_lr_scheduler(cfg, optimizer)
        return super().build_lr_scheduler(cfg, optimizer, iters_per_epoch)

    @classmethod
    def build_train_loader(cls, cfg: CfgNode):
        video = [is_vvi_dataset(name) for name in cfg.DATASETS.NAMES]
        if all(video):
            return build_vvi_train_loader(cfg)
        if any(video):
            raise ValueError(f"DATASETS.NAMES {cfg.DATASETS.NAMES} mixes video visible-infrared and image data sets")
        with image_sets_under(cfg.DATASETS.ROOT, " / ".join(cfg.DATASETS.NAMES)):
            return super().build_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg: CfgNode, dataset_name: str):
        """(loader, data set) for a video visible-infrared data set, (loader, num_query) otherwise."""
        if is_vvi_dataset(dataset_name):
            return build_vvi_test_loader(cfg, dataset_name)
        with image_sets_under(cfg.DATASETS.ROOT, dataset_name):
            loader_args = _test_loader_from_config(cfg, dataset_name=dataset_name)
        return build_reid_test_loader(**loader_args, num_workers=cfg.DATALOADER.NUM_WORKERS)

    @classmethod
    def build_evaluator(cls, cfg: CfgNode, dataset_name: str, output_dir: str | None = None):
        """(loader, VVIEvaluator: every direction) for a video visible-infrared data set,
        (loader, fast-reid's ReidEvaluator) otherwise."""
        if is_vvi_dataset(dataset_name):
            data_loader, dataset = cls.build_test_loader(cfg, dataset_name)
            return data_loader, VVIEvaluator(cfg, dataset, dataset_name, output_dir)
        return super().build_evaluator(cfg, dataset_name, output_dir)


def _record_before_checkpoints(hook_list: list[hooks.HookBase]) -> list[hooks.HookBase]:
    """``hook_list`` with the :class:`RunRecordWriter` moved just before the :class:`BestCheckpointer`."""
    record = [hook for hook in hook_list if isinstance(hook, RunRecordWriter)]
    others = [hook for hook in hook_list if not isinstance(hook, RunRecordWriter)]
    at = next(index for index, hook in enumerate(others) if isinstance(hook, BestCheckpointer))
    return others[:at] + record + others[at:]


def log_model(model: torch.nn.Module) -> None:
    """The model's printout to the log files only, and its parameter counts to the console too."""
    logger_of_files = logging.getLogger("fastreid_vld")
    log_to_files_only(logger_of_files, f"Model:\n{model}")
    parameters = list(model.parameters())
    total = sum(p.numel() for p in parameters)
    trained = sum(p.numel() for p in parameters if p.requires_grad)
    parts = ", ".join(f"{name} {type(child).__name__}" for name, child in model.named_children())
    logger.info("Model: %s (%s): %s parameters, %s trained; its printout is in log.txt", type(model).__name__,
                parts, f"{total:,}", f"{trained:,}")


def log_local_batch_norms(model: torch.nn.Module) -> None:
    """Under torch.distributed, one log line where the backbone's BatchNorm layers see each process's
    share of the batch (the head and the losses see the whole batch)."""
    world_size = comm.get_world_size()
    if world_size == 1 or not comm.is_main_process():
        return
    batch_norms = batch_norm_layers(getattr(model, "module", model).backbone)
    if batch_norms:
        logger.info("The backbone's BatchNorm layers (%s, ...) normalise each process's share of the batch "
                    "(SOLVER.IMS_PER_BATCH / %d tracklets); the head and the losses see the whole batch",
                    batch_norms[0], world_size)


def check_config_and_data(cfg: CfgNode, test_only: bool = False) -> None:
    """Before anything is built: the config's rules (``check_config``), then the video data sets loaded
    (every frame decoded; test sets that are not trained on, and every set with ``test_only``
    (evaluation), by their test split alone) and the rules only they can check
    (``check_config_against_data``: identities for a batch, results to select by, neighbours for
    re-ranking), so a bad test set or value fails now, not at the first evaluation."""
    check_config(cfg)
    training = () if test_only else cfg.DATASETS.NAMES
    names = [name for name in dict.fromkeys([*training, *cfg.DATASETS.TESTS]) if is_vvi_dataset(name)]
    if names:  # fast-reid keys the video loaders would refuse, before any frame is read
        trains_on_video = any(name in training for name in names)
        refuse_keys_not_honoured(cfg, TRAIN_KEYS_NOT_HONOURED if trains_on_video else FRAME_KEYS_NOT_HONOURED)
    check_config_against_data(cfg, {name: load_vvi_dataset(cfg, name, test_only=name not in training)
                                    for name in names})
