"""Runtime adaptations of fastreid 1.4.0 and torchvision 0.28.0 to torch 2.x, numpy 2,
Python 3.11 and CPU-only machines.

This is the ONE place where third-party code is adapted. Nothing in site-packages is
edited: every adaptation below is applied at runtime by :func:`apply`, which
``fastreid_vld/__init__.py`` calls before anything imports fastreid or torchvision.
Each adaptation names what it adapts and why; ``tests/test_compat.py`` has a test per
adaptation that fails without it.

The fast-reid rank metrics are a Cython module that fast-reid wants to compile with
``make`` inside site-packages. :func:`build_rank_extensions` compiles the same sources
into :data:`RANK_EXT_DIR` (outside site-packages) at install time, and :func:`apply`
loads them from there.
"""

from __future__ import annotations

import collections
import collections.abc
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import shutil
import sys
import tempfile
import types
import warnings
from collections.abc import Callable
from os import environ
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: Where the compiled fast-reid rank/ROC Cython modules live: per environment (so they
#: match its numpy and Python ABI), outside site-packages. Override with FASTREID_VLD_EXT_DIR.
RANK_EXT_DIR = Path(environ.get("FASTREID_VLD_EXT_DIR", Path(sys.prefix) / "fastreid_vld_ext"))
RANK_EXT_NAMES = ("rank_cy", "roc_cy")
_RANK_CYLIB = "fastreid.evaluation.rank_cylib"

_applied = False
# Keeps the torchvision operator-schema library alive for the life of the process.
_torchvision_schema_lib: torch.library.Library | None = None


# --------------------------------------------------------------------------- before import


def restore_collections_aliases() -> None:
    """fastreid/data/build.py and evaluation/testing.py do ``from collections import Mapping``;
    the ABC aliases in ``collections`` were removed in Python 3.10."""
    for name in ("Mapping", "MutableMapping", "Sequence", "Iterable"):
        if not hasattr(collections, name):
            setattr(collections, name, getattr(collections.abc, name))


def install_torch_six() -> None:
    """fastreid/data/build.py does ``from torch._six import string_classes``; torch removed
    ``torch._six`` in 2.0. Provide the one name fast-reid uses."""
    if "torch._six" in sys.modules:
        return
    six = types.ModuleType("torch._six", "torch._six as fastreid 1.4.0 expects it (string_classes)")
    six.string_classes = (str, bytes)
    sys.modules["torch._six"] = six
    torch._six = six


def shim_torchvision_operators() -> bool:
    """torchvision 0.28.0 from PyPI is a CUDA build: on a CPU torch its ``_C`` extension does
    not load, and ``import torchvision`` (so ``import open_clip``) then dies registering fake
    kernels for ``torchvision::nms`` / ``torchvision::qnms``, which only ``_C`` defines. Where
    (and only where) ``_C`` fails to load, define those two operator schemas so the import
    succeeds; no kernel is registered, so calling them still fails loudly.

    Returns True when the schemas were defined."""
    global _torchvision_schema_lib
    if _torchvision_schema_lib is not None or "torchvision" in sys.modules:
        return False
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False
    package_dir = Path(spec.origin).parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        extension = package_dir / f"_C{suffix}"
        if extension.exists():
            try:
                torch.ops.load_library(str(extension))
                return False  # the real operators are there
            except (OSError, RuntimeError):
                break
    lib = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        lib.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _torchvision_schema_lib = lib
    return True


def torchvision_schemas_defined() -> bool:
    """Whether :func:`shim_torchvision_operators` had to define the operator schemas."""
    return _torchvision_schema_lib is not None


def load_rank_extensions(ext_dir: Path = RANK_EXT_DIR) -> bool:
    """Register the prebuilt rank/ROC Cython modules as
    ``fastreid.evaluation.rank_cylib.{rank_cy,roc_cy}`` so fast-reid's own
    ``from .rank_cylib.rank_cy import evaluate_cy`` finds them. Returns True when both load."""
    loaded = 0
    for name in RANK_EXT_NAMES:
        full_name = f"{_RANK_CYLIB}.{name}"
        if full_name in sys.modules:
            loaded += 1
            continue
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            path = ext_dir / f"{name}{suffix}"
            if path.exists():
                spec = importlib.util.spec_from_file_location(full_name, path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                sys.modules[full_name] = module
                loaded += 1
                break
    if loaded == len(RANK_EXT_NAMES) and "fastreid.evaluation.rank" in sys.modules:
        # rank.py decided at its import time that Cython was missing: tell it otherwise.
        rank = sys.modules["fastreid.evaluation.rank"]
        rank.evaluate_cy = sys.modules[f"{_RANK_CYLIB}.rank_cy"].evaluate_cy
        rank.IS_CYTHON_AVAI = True
    return loaded == len(RANK_EXT_NAMES)


def build_rank_extensions(ext_dir: Path = RANK_EXT_DIR) -> Path:
    """Compile fast-reid's ``rank_cy.pyx`` / ``roc_cy.pyx`` (shipped in its wheel) into
    ``ext_dir``, in a scratch folder, never inside site-packages. About 20 s on 2 cores."""
    import numpy as np
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    spec = importlib.util.find_spec(_RANK_CYLIB)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{_RANK_CYLIB} not found: is fastreid==1.4.0 installed?")
    source_dir = Path(next(iter(spec.submodule_search_locations)))
    ext_dir = Path(ext_dir)
    ext_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="fastreid_vld_rank_") as scratch:
        extensions = []
        for name in RANK_EXT_NAMES:
            pyx = Path(scratch) / f"{name}.pyx"
            shutil.copyfile(source_dir / f"{name}.pyx", pyx)
            extensions.append(Extension(name, [str(pyx)], include_dirs=[np.get_include()]))
        directives = {"language_level": 3, "show_performance_hints": False}
        extensions = cythonize(extensions, quiet=True, compiler_directives=directives)
        distribution = Distribution({"ext_modules": extensions})
        command = distribution.get_command_obj("build_ext")
        command.build_lib = str(ext_dir)
        command.build_temp = str(Path(scratch) / "build")
        command.ensure_finalized()
        command.run()
    return ext_dir


# --------------------------------------------------------------------------- after import


def make_registry_idempotent(registry_module: types.ModuleType) -> None:
    """fast-reid's Registry asserts on a second registration of a name. Re-importing a module
    that registers (importlib.reload, a module reached under two names, spawned workers)
    would then crash. Accept a re-registration of the same definition (same module and
    qualified name); a different object under a taken name still fails."""
    Registry = registry_module.Registry

    def _do_register(self: Registry, name: str, obj: object) -> None:
        existing = self._obj_map.get(name)
        if existing is not None and _definition_key(existing) != _definition_key(obj):
            raise AssertionError(
                f"An object named '{name}' was already registered in '{self._name}' registry "
                f"(by {_definition_key(existing)}; now {_definition_key(obj)})!"
            )
        self._obj_map[name] = obj

    Registry._do_register = _do_register


def _definition_key(obj: object) -> tuple[str, str]:
    return getattr(obj, "__module__", ""), getattr(obj, "__qualname__", repr(obj))


def replace_rank_compile_helper(reid_evaluation: types.ModuleType) -> None:
    """``ReidEvaluator.__init__`` runs ``make`` inside site-packages when the rank Cython
    module is missing and calls ``sys.exit(1)`` if that fails. Build into RANK_EXT_DIR
    instead, and fall back to fast-reid's python metrics with a warning on failure."""
    def compile_helper() -> None:
        try:
            build_rank_extensions()
            load_rank_extensions()
        except Exception as error:  # a compiler may be missing; metrics still work in python
            warnings.warn(
                f"could not build fast-reid's rank Cython module into {RANK_EXT_DIR} ({error}); "
                "using its python metrics (about 40x slower)",
                stacklevel=2,
            )

    reid_evaluation.compile_helper = compile_helper


def run_jaccard_on_cpu(compute_dist: types.ModuleType) -> None:
    """``build_dist(metric="jaccard")`` (the k-reciprocal re-ranking path) always calls
    ``compute_jaccard_distance(search_option=0)``, which moves features to CUDA and uses faiss
    GPU resources. Without CUDA (or with faiss-cpu), use its CPU faiss search (option 3)."""
    original = compute_dist.compute_jaccard_distance
    if getattr(original, "_fastreid_vld_adapted", False):
        return

    @functools.wraps(original)
    def compute_jaccard_distance(features: torch.Tensor, k1: int = 20, k2: int = 6,
                                 search_option: int = 0, fp16: bool = False):
        if search_option < 3 and not _faiss_gpu_usable():
            search_option = 3
        return original(features, k1=k1, k2=k2, search_option=search_option, fp16=fp16)

    compute_jaccard_distance._fastreid_vld_adapted = True
    compute_dist.compute_jaccard_distance = compute_jaccard_distance


def _faiss_gpu_usable() -> bool:
    import faiss

    return torch.cuda.is_available() and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


def make_dataloader_host_safe(build: types.ModuleType) -> None:
    """``DataLoaderX`` creates a CUDA stream and copies every batch to the GPU from a
    background thread, and the loader builders hard-code ``pin_memory=True``. Without CUDA,
    build a plain DataLoader (no stream, no pinning); with CUDA keep fast-reid's class."""
    cuda_loader = build.DataLoaderX

    def DataLoaderX(local_rank: int, **kwargs: Any) -> torch.utils.data.DataLoader:  # noqa: N802
        if torch.cuda.is_available():
            return cuda_loader(local_rank, **kwargs)
        kwargs["pin_memory"] = False
        return torch.utils.data.DataLoader(**kwargs)

    build.DataLoaderX = DataLoaderX


def make_amp_device_generic(train_loop: types.ModuleType) -> None:
    """``AMPTrainer`` asserts CUDA and uses the deprecated ``torch.cuda.amp`` API. Use
    ``torch.autocast`` on the model's device with ``trainer.amp_dtype`` (float16 with a gradient
    scaler, on CUDA and on the CPU alike; bfloat16 without one; default float16 on CUDA, bfloat16
    elsewhere; the VLD trainer sets it from SOLVER.AMP.DTYPE)."""
    import time

    AMPTrainer = train_loop.AMPTrainer

    def autocast_dtype(self: AMPTrainer) -> tuple[str, torch.dtype]:
        """(the model's device type, the autocast dtype)."""
        device_type = next(self.model.parameters()).device.type
        return device_type, getattr(self, "amp_dtype", None) or (
            torch.float16 if device_type == "cuda" else torch.bfloat16)

    def prepare_grad_scaler(self: AMPTrainer) -> torch.amp.GradScaler:
        """The gradient scaler for the model's device (created once; enabled for float16 only), so
        that it exists before the first step and its state can travel in checkpoints."""
        device_type, dtype = self.autocast_dtype()
        if self.grad_scaler is None or self.grad_scaler._device != device_type:
            self.grad_scaler = torch.amp.GradScaler(device_type, enabled=dtype == torch.float16)
        return self.grad_scaler

    def run_step(self: AMPTrainer) -> None:
        assert self.model.training, "[AMPTrainer] model was changed to eval mode!"
        device_type, dtype = self.autocast_dtype()
        grad_scaler = self.prepare_grad_scaler()
        start = time.perf_counter()
        data = next(self._data_loader_iter)
        data_time = time.perf_counter() - start
        with torch.autocast(device_type=device_type, dtype=dtype):
            loss_dict = self.model(data)
            losses = sum(loss_dict.values())
        self.optimizer.zero_grad()
        grad_scaler.scale(losses).backward()
        self._write_metrics(loss_dict, data_time)
        grad_scaler.step(self.optimizer)
        grad_scaler.update()

    def __init__(self: AMPTrainer, model, data_loader, optimizer, param_wrapper, grad_scaler=None):
        super(AMPTrainer, self).__init__(model, data_loader, optimizer, param_wrapper)
        self.grad_scaler = grad_scaler  # prepare_grad_scaler: once the device is known

    AMPTrainer.__init__ = __init__
    AMPTrainer.autocast_dtype = autocast_dtype
    AMPTrainer.prepare_grad_scaler = prepare_grad_scaler
    AMPTrainer.run_step = run_step


def build_optimizers_on_the_parameters(solver_build: types.ModuleType) -> None:
    """``build_optimizer`` puts the parameters into ``ContiguousParams`` buffers by default: each
    parameter's gradient is a view of a buffer whose ``.grad`` the optimizer steps with. torch 2's
    ``optimizer.zero_grad()`` sets that ``.grad`` to None, after which the optimizer skips every
    buffer (the model never changes) and a float16 GradScaler fails ("No inf checks were recorded
    for this optimizer"). Build on the parameters themselves (fast-reid's own ``contiguous=False``:
    the same lr and weight decay per parameter)."""
    contiguous_build = solver_build.build_optimizer

    @functools.wraps(contiguous_build)
    def build_optimizer(cfg: Any, model: torch.nn.Module, contiguous: bool = False):
        return contiguous_build(cfg, model, contiguous=contiguous)

    solver_build.build_optimizer = build_optimizer


def make_launch_device_generic(launch_module: types.ModuleType) -> None:
    """``launch()`` with more than one process asserts CUDA, hard-codes the NCCL backend and
    calls ``torch.cuda.set_device``: use gloo and skip the device pinning without CUDA. With one
    process it drops ``main_func``'s return value: return it."""
    spawn_launch = launch_module.launch

    @functools.wraps(spawn_launch)
    def launch(main_func: Callable, num_gpus_per_machine: int, num_machines: int = 1,
               machine_rank: int = 0, dist_url: str | None = None, args: tuple = ()) -> Any:
        if num_machines * num_gpus_per_machine == 1:
            return main_func(*args)
        return spawn_launch(main_func, num_gpus_per_machine, num_machines, machine_rank,
                            dist_url, args)

    launch_module._distributed_worker = _distributed_worker
    launch_module.launch = launch  # fastreid.engine star-imports it after this module loads
    if "fastreid.engine" in sys.modules and hasattr(sys.modules["fastreid.engine"], "launch"):
        sys.modules["fastreid.engine"].launch = launch


def _distributed_worker(local_rank: int, main_func: Callable, world_size: int,
                        num_gpus_per_machine: int, machine_rank: int, dist_url: str,
                        args: tuple) -> None:
    """fast-reid's worker (what ``mp.spawn`` runs in each process), joining the process group as a
    torchrun process does (:func:`fastreid_vld.engine.launch.run_in_process_group`): the backend and
    device chosen by what the machine has, the group destroyed when ``main_func`` returns."""
    from .engine.launch import run_in_process_group  # at call time: fastreid_vld.engine imports fast-reid's

    run_in_process_group(main_func, args, init_method=dist_url,
                         rank=machine_rank * num_gpus_per_machine + local_rank, world_size=world_size,
                         local_rank=local_rank, local_world_size=num_gpus_per_machine)


def make_ddp_device_generic(defaults: types.ModuleType) -> None:
    """``DefaultTrainer`` wraps the model in DistributedDataParallel with
    ``device_ids=[local_rank]``, which DDP rejects for a CPU module: pass no device_ids there."""
    from torch.nn.parallel import DistributedDataParallel

    def wrap(model: torch.nn.Module, device_ids=None, **kwargs: Any) -> DistributedDataParallel:
        if next(model.parameters()).device.type == "cpu":
            device_ids = None
        return DistributedDataParallel(model, device_ids=device_ids, **kwargs)

    defaults.DistributedDataParallel = wrap


def seed_with_the_config_seed(defaults: types.ModuleType) -> None:
    """``default_setup`` seeds python, numpy and torch with a generated seed, and logs "Using a
    generated random seed N", whatever SEED says (fast-reid's own tools never seed again). Where
    SEED >= 0 it seeds SEED + the process rank instead, and logs that seed."""
    from fastreid.utils import comm
    from fastreid.utils.env import seed_all_rng

    setup = defaults.default_setup

    def seed_as_configured(seed: int, config_seed: int) -> None:
        seed_all_rng(seed)
        logging.getLogger("fastreid.utils.env").info(
            "Seed %d (SEED %d + process rank %d) for python, numpy and torch", seed, config_seed, seed - config_seed)

    def default_setup(cfg: Any, args: Any) -> None:
        if cfg.SEED >= 0:
            defaults.seed_all_rng = functools.partial(seed_as_configured, cfg.SEED + comm.get_rank(), cfg.SEED)
        try:
            setup(cfg, args)
        finally:
            defaults.seed_all_rng = seed_all_rng

    defaults.default_setup = default_setup


def adapt_engine_defaults(defaults: types.ModuleType) -> None:
    make_ddp_device_generic(defaults)
    seed_with_the_config_seed(defaults)


def make_checkpoints_safe(checkpoint_module: types.ModuleType) -> None:
    """fast-reid's ``Checkpointer`` writes checkpoints and ``last_checkpoint`` in place, reads them
    with torch's default ``weights_only`` and resumes from ``last_checkpoint`` even when that file
    is truncated. Write both atomically, read with ``weights_only=True`` explicitly (one error naming
    the file otherwise), resume from the newest readable checkpoint, and remove the temporary files a
    killed save left in the folder when a Checkpointer that saves is made on it (fastreid_vld/checkpoint.py)."""
    from .checkpoint import (
        CHECKPOINT_TARGETS,
        newest_readable_checkpoint,
        read_checkpoint,
        remove_leftovers,
        write_atomically,
    )

    Checkpointer = checkpoint_module.Checkpointer
    create = Checkpointer.__init__

    @functools.wraps(create)
    def __init__(self: Checkpointer, model: torch.nn.Module, save_dir: str = "", *, save_to_disk: bool = True,
                 **checkpointables: Any) -> None:
        create(self, model, save_dir, save_to_disk=save_to_disk, **checkpointables)
        if save_dir and save_to_disk:
            remove_leftovers(save_dir, CHECKPOINT_TARGETS)

    def save(self: Checkpointer, name: str, **kwargs: Any) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict(),
                **{key: obj.state_dict() for key, obj in self.checkpointables.items()}, **kwargs}
        save_file = Path(self.save_dir) / f"{name}.pth"
        self.logger.info("Saving checkpoint to %s", save_file)
        write_atomically(save_file, lambda file: torch.save(data, file))
        self.tag_last_checkpoint(save_file.name)

    def tag_last_checkpoint(self: Checkpointer, last_filename_basename: str) -> None:
        write_atomically(Path(self.save_dir) / "last_checkpoint",
                         lambda file: file.write(last_filename_basename.encode()))

    def get_checkpoint_file(self: Checkpointer) -> str:
        return newest_readable_checkpoint(self.save_dir)

    Checkpointer.__init__ = __init__
    Checkpointer.save = save
    Checkpointer.tag_last_checkpoint = tag_last_checkpoint
    Checkpointer.get_checkpoint_file = get_checkpoint_file
    Checkpointer._load_file = lambda self, path: read_checkpoint(path)


#: fast-reid's backbone modules whose builders read pretrained weights with their module's ``torch.load``
#: (MODEL.BACKBONE.PRETRAIN_PATH, or the ImageNet weights they download into $TORCH_HOME/checkpoints) or with
#: torch.hub's ``load_state_dict_from_url`` (resnest, mobilenetv3).
PRETRAIN_READING_MODULES = tuple(f"fastreid.modeling.backbones.{name}" for name in (
    "resnet", "osnet", "resnest", "resnext", "repvgg", "mobilenet", "mobilenetv3", "shufflenet",
    "vision_transformer", "regnet.regnet", "regnet.effnet"))


def read_pretrained_weights_only(backbone_module: types.ModuleType) -> None:
    """fast-reid's backbone builders read MODEL.BACKBONE.PRETRAIN_PATH (and the weights they download) with
    ``torch.load(path)``, ``weights_only`` left to torch's default, which ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``
    turns off: the weights file then runs whatever code its pickle holds. torch.hub's ``load_state_dict_from_url``
    passes ``weights_only=False`` unless told otherwise. Give the module a ``torch`` whose ``load`` and
    ``hub.load_state_dict_from_url`` read with ``weights_only=True`` explicitly, every other name torch's own, so a
    bad or unsafe file is one error naming the config key and the file."""
    backbone_module.torch = _WEIGHTS_ONLY_TORCH
    if hasattr(backbone_module, "load_state_dict_from_url"):  # mobilenetv3 imported it by name
        backbone_module.load_state_dict_from_url = _WEIGHTS_ONLY_TORCH.hub.load_state_dict_from_url


def _read_pretrained(path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """``torch.load`` as fast-reid's backbone builders call it (a path, ``map_location``: read onto the CPU),
    weights only; errors name the config key that led to the file."""
    from .checkpoint import read_checkpoint

    downloads = Path(torch.hub._get_torch_home()) / "checkpoints"  # where fast-reid's builders keep their downloads
    key = ("MODEL.BACKBONE.PRETRAIN (the ImageNet weights fast-reid downloaded)" if Path(path).parent == downloads
           else "MODEL.BACKBONE.PRETRAIN_PATH")
    return read_checkpoint(path, key)


def _load_state_dict_from_url(url: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """torch.hub's ``load_state_dict_from_url`` with ``weights_only=True``; a file torch.hub keeps that cannot be read
    so is one error naming the config key, the url and the folder (a failed download stays torch's error)."""
    from .checkpoint import unreadable_checkpoint

    try:
        return torch.hub.load_state_dict_from_url(url, *args, **{**kwargs, "weights_only": True})
    except OSError:
        raise
    except Exception as error:  # truncated, not a torch file, or a pickle that would run code
        where = (f"MODEL.BACKBONE.PRETRAIN (the ImageNet weights torch.hub keeps for {url} in "
                 f"{Path(torch.hub.get_dir()) / 'checkpoints'})")
        raise unreadable_checkpoint(where, error) from error


def _module_like(module: types.ModuleType, **replaced: Any) -> types.ModuleType:
    """A module whose names are ``module``'s (looked up there at each use) but for ``replaced``."""
    like = types.ModuleType(module.__name__, module.__doc__)
    like.__getattr__ = functools.partial(getattr, module)
    vars(like).update(replaced)
    return like


#: torch, with ``load`` and ``hub.load_state_dict_from_url`` reading weights only (:func:`read_pretrained_weights_only`)
_WEIGHTS_ONLY_TORCH = _module_like(torch, load=_read_pretrained,
                                   hub=_module_like(torch.hub, load_state_dict_from_url=_load_state_dict_from_url))


def make_metric_printer_safe(events: types.ModuleType) -> None:
    """``CommonMetricPrinter`` estimates the ETA from the time since its last write divided by
    the iterations since then, which is zero when it writes twice at one iteration (a one-iteration
    epoch: after the step, then after the epoch): ZeroDivisionError. Skip the estimate then."""
    printer = events.CommonMetricPrinter
    write = printer.write

    @functools.wraps(write)
    def write_without_a_zero_interval(self) -> None:
        if self._last_write is not None and self._last_write[0] == events.get_event_storage().iter:
            self._last_write = None
        write(self)

    printer.write = write_without_a_zero_interval


class _WidthFlipAveraged(torch.nn.Module):
    """A model whose outputs are the mean of the model's on the batch and on its width-flipped
    copy (the last dimension of images [B, 3, H, W] and of tracklets [B, T, 3, H, W] alike)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, inputs: dict) -> torch.Tensor:
        flipped = {**inputs, "images": inputs["images"].flip(dims=[-1])}
        return (self.model(inputs) + self.model(flipped)) / 2  # [B, D]


def make_flip_test_width_wise(evaluator: types.ModuleType) -> None:
    """``inference_on_dataset(..., flip_test=True)`` (TEST.FLIP.ENABLED) flips dimension 3: the
    width of images [B, 3, H, W] but the height of tracklets [B, T, 3, H, W], so video features
    were averaged with those of upside-down frames. Flip the last dimension instead."""
    inference_on_dataset = evaluator.inference_on_dataset

    @functools.wraps(inference_on_dataset)
    def flipping_the_width(model, data_loader, dataset_evaluator, flip_test: bool = False):
        if flip_test:
            model = _WidthFlipAveraged(model)
        return inference_on_dataset(model, data_loader, dataset_evaluator, flip_test=False)

    evaluator.inference_on_dataset = flipping_the_width


def report_installed_version(fastreid: types.ModuleType) -> None:
    """fastreid 1.4.0 says ``__version__ = "1.3"``, which the environment dump of every run shows:
    take the version of the installed distribution."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        fastreid.__version__ = version("fastreid")
    except PackageNotFoundError:  # a source checkout on sys.path: keep what it says
        pass


# --------------------------------------------------------------------------- wiring

#: module name -> the adaptation applied to it right after it is first executed.
AFTER_IMPORT: dict[str, Callable[[types.ModuleType], None]] = {
    "fastreid.utils.registry": make_registry_idempotent,
    "fastreid.evaluation.reid_evaluation": replace_rank_compile_helper,
    "fastreid.utils.compute_dist": run_jaccard_on_cpu,
    "fastreid.data.build": make_dataloader_host_safe,
    "fastreid.engine.train_loop": make_amp_device_generic,
    "fastreid.solver.build": build_optimizers_on_the_parameters,
    "fastreid.engine.launch": make_launch_device_generic,
    "fastreid.engine.defaults": adapt_engine_defaults,
    "fastreid.utils.checkpoint": make_checkpoints_safe,
    **dict.fromkeys(PRETRAIN_READING_MODULES, read_pretrained_weights_only),
    "fastreid.utils.events": make_metric_printer_safe,
    "fastreid.evaluation.evaluator": make_flip_test_width_wise,
    "fastreid": report_installed_version,
}


class _PatchingLoader(importlib.abc.Loader):
    """Runs the real loader, then the adaptation, so the patched module is what importers see."""

    def __init__(self, loader: importlib.abc.Loader, adapt: Callable[[types.ModuleType], None]):
        self._loader = loader
        self._adapt = adapt

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: types.ModuleType) -> None:
        self._loader.exec_module(module)
        self._adapt(module)

    def __getattr__(self, name: str) -> Any:  # get_source etc., for tracebacks
        return getattr(self._loader, name)


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Applies :data:`AFTER_IMPORT` lazily, so importing fastreid_vld never imports the heavy
    parts of fast-reid (its evaluation pulls in scikit-learn) just to adapt them."""

    def find_spec(self, name: str, path: Any, target: types.ModuleType | None = None):
        adapt = AFTER_IMPORT.get(name)
        if adapt is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _PatchingLoader(spec.loader, adapt)
                return spec
        return None


def apply() -> None:
    """Apply every adaptation: the pre-import ones now, the others to already-imported
    modules now and to the rest when they are first imported. Safe to call again."""
    global _applied
    if _applied:
        return
    restore_collections_aliases()
    install_torch_six()
    shim_torchvision_operators()
    load_rank_extensions()
    for name, adapt in AFTER_IMPORT.items():
        if name in sys.modules:
            adapt(sys.modules[name])
    sys.meta_path.insert(0, _AfterImportFinder())
    _applied = True
