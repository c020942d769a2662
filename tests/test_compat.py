"""One test per adaptation in fastreid_vld/compat.py; each fails without its adaptation."""

from __future__ import annotations

import importlib
import sys
import types
import warnings

import numpy as np
import pytest
import torch
from conftest import run_python

from fastreid_vld import compat


def test_collections_aliases_and_torch_six_let_fastreid_data_import():
    import collections

    from fastreid.data import build  # does `from collections import Mapping`, `torch._six`

    assert collections.Mapping is collections.abc.Mapping
    assert build.string_classes == (str, bytes)
    batch = build.fast_batch_collator([{"name": "a", "x": torch.ones(2)}, {"name": "b", "x": torch.zeros(2)}])
    assert batch["name"] == ["a", "b"] and batch["x"].shape == (2, 2)


def test_torchvision_and_open_clip_import_only_with_the_operator_shim():
    probe = ("from fastreid_vld import compat; import torchvision, open_clip; "
             "print('defined' if compat.torchvision_schemas_defined() else 'native')")
    shimmed = run_python("-c", probe)
    assert shimmed.returncode == 0, shimmed.stderr
    plain = run_python("-c", "import torchvision")
    if shimmed.stdout.startswith("defined"):
        # the CUDA build's _C did not load: without the shim the import dies on the schemas
        assert plain.returncode != 0 and "torchvision::nms" in plain.stderr
    else:  # a torchvision whose _C loads: the shim must leave it alone
        assert plain.returncode == 0, plain.stderr


def test_rank_cython_module_is_loaded_from_outside_site_packages():
    import fastreid.evaluation.rank as rank
    import fastreid.evaluation.rank_cylib as cylib

    assert rank.IS_CYTHON_AVAI, f"build it with make install (into {compat.RANK_EXT_DIR})"
    module_file = sys.modules["fastreid.evaluation.rank_cylib.rank_cy"].__file__
    assert str(compat.RANK_EXT_DIR) in module_file
    assert not list(importlib.resources.files(cylib).glob("rank_cy*.so"))
    # and it computes the same as fast-reid's python fallback
    rng = np.random.default_rng(0)
    dist = rng.random((8, 20)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 4, 8), rng.integers(0, 4, 20)
    q_cams, g_cams = rng.integers(0, 2, 8), rng.integers(0, 2, 20)
    cy = rank.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5, use_cython=True)
    py = rank.evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams, max_rank=5, use_cython=False)
    for a, b in zip(cy, py, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.slow
def test_build_rank_extensions_compiles_into_a_given_folder(tmp_path):
    built = compat.build_rank_extensions(tmp_path)
    names = sorted(p.name.split(".")[0] for p in built.iterdir() if p.suffix in (".so", ".pyd"))
    assert names == ["rank_cy", "roc_cy"]


def test_rank_compile_failure_warns_instead_of_exiting(monkeypatch):
    from fastreid.evaluation import reid_evaluation

    def fail(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(compat, "build_rank_extensions", fail)
    with pytest.warns(UserWarning, match="no compiler here"):
        reid_evaluation.compile_helper()  # fast-reid's own helper would sys.exit(1)


def test_jaccard_reranking_distance_runs_on_cpu_faiss():
    from fastreid.utils.compute_dist import build_dist

    torch.manual_seed(0)
    query, gallery = torch.randn(6, 16), torch.randn(20, 16)
    gallery[:6] = query + 0.01 * torch.randn(6, 16)  # each query has a near-duplicate
    dist = build_dist(query, gallery, metric="jaccard", k1=4, k2=2)
    assert dist.shape == (6, 20)
    assert np.all((dist >= 0) & (dist <= 1 + 1e-6))
    assert np.array_equal(dist.argmin(axis=1), np.arange(6))


def test_dataloaderx_builds_a_host_loader_without_cuda():
    from fastreid.data import build

    loader = build.DataLoaderX(0, dataset=[{"x": torch.ones(2)}] * 4, batch_size=2,
                               collate_fn=build.fast_batch_collator, pin_memory=True)
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["x"].shape == (2, 2)
    if not torch.cuda.is_available():
        assert loader.pin_memory is False


class _QuadraticModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(4))

    def forward(self, batch):
        return {"loss": ((self.weight * batch["x"]) ** 2).sum()}


def test_amp_trainer_steps_without_cuda():
    from fastreid.engine.train_loop import AMPTrainer

    model = _QuadraticModel()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    trainer = AMPTrainer(model, iter([{"x": torch.ones(4)}] * 3), optimizer, None)
    trainer.amp_dtype = torch.bfloat16
    from fastreid.utils.events import EventStorage

    with EventStorage(0) as trainer.storage:
        trainer.iter = 0
        trainer.run_step()
    assert torch.all(model.weight < 1)  # one SGD step on the autocast loss moved the weights


@pytest.mark.parametrize("amp", [False, True], ids=["SimpleTrainer", "AMPTrainer float16"])
def test_fast_reids_optimizer_moves_the_weights_after_torch2_zero_grad(amp):
    """What DefaultTrainer builds for any model but VLD: with ContiguousParams, torch 2's zero_grad()
    empties the buffers' gradients; the step then moves nothing, or float16 scaling fails."""
    from fastreid.config import get_cfg
    from fastreid.engine.train_loop import AMPTrainer, SimpleTrainer
    from fastreid.solver import build_optimizer
    from fastreid.utils.events import EventStorage

    model = _QuadraticModel()
    optimizer, param_wrapper = build_optimizer(get_cfg(), model)
    trainer = (AMPTrainer if amp else SimpleTrainer)(model, iter([{"x": torch.ones(4)}] * 3), optimizer,
                                                      param_wrapper)
    trainer.amp_dtype = torch.float16
    with EventStorage(0) as trainer.storage:
        trainer.iter = 0
        trainer.run_step()
    assert torch.all(model.weight < 1)  # one Adam step against the gradient


def test_launch_returns_the_result_of_a_single_process():
    from fastreid.engine import launch

    assert launch(lambda a, b: a + b, 1, args=(2, 3)) == 5


def test_registry_accepts_reimport_but_not_a_different_object():
    from fastreid.utils.registry import Registry

    registry = Registry("TEST")
    module = types.ModuleType("fastreid_vld_test_registers")
    source = "def build_thing():\n    return 1\n"
    exec(compile(source, "<registers>", "exec"), module.__dict__)
    module.build_thing.__module__ = module.__name__
    registry.register(module.build_thing)
    exec(compile(source, "<registers>", "exec"), module.__dict__)  # the module imported again
    module.build_thing.__module__ = module.__name__
    registry.register(module.build_thing)
    assert registry.get("build_thing") is module.build_thing

    def build_thing():
        return 2

    with pytest.raises(AssertionError, match="already registered"):
        registry.register(build_thing)


def test_importing_the_plugin_twice_registers_nothing_twice():
    # a module that registers, executed a second time, as importlib.reload does
    import fastreid.modeling.backbones.resnet as resnet
    from fastreid.modeling.backbones import BACKBONE_REGISTRY

    importlib.reload(resnet)
    assert BACKBONE_REGISTRY.get("build_resnet_backbone") is resnet.build_resnet_backbone


def test_importing_the_plugin_leaves_heavy_fastreid_parts_unimported():
    heavy = ("sklearn", "fastreid.evaluation", "fastreid.engine")
    probe = f"import sys, fastreid_vld; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = run_python("-c", probe)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_adaptations_are_applied_once_even_when_called_again():
    finders = [f for f in sys.meta_path if type(f).__name__ == "_AfterImportFinder"]
    compat.apply()
    assert len([f for f in sys.meta_path if type(f).__name__ == "_AfterImportFinder"]) == len(finders) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compat.apply()


def test_distributed_worker_destroys_its_process_group(monkeypatch):
    import socket

    import torch.distributed as dist
    from fastreid.utils import comm

    monkeypatch.setattr(comm, "_LOCAL_PROCESS_GROUP", None)
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    seen = []
    compat._distributed_worker(0, lambda: seen.append(dist.get_backend()), 1, 1, 0, f"tcp://127.0.0.1:{port}", ())
    assert seen == ["gloo" if not torch.cuda.is_available() else "nccl"]
    assert not dist.is_initialized()  # left to interpreter exit, gloo's threads can abort the process


class _RecordingModel(torch.nn.Module):
    """Returns each tracklet's images summed over everything but the width: [B, W]."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def forward(self, inputs):
        self.seen.append(inputs["images"].clone())
        return inputs["images"].sum(dim=(1, 2, 3))  # [B, T, 3, H, W] -> [B, W]


def test_the_flip_test_flips_tracklets_along_their_width():
    from fastreid.evaluation import DatasetEvaluator, inference_on_dataset

    class Keep(DatasetEvaluator):
        def reset(self):
            self.outputs = []

        def process(self, inputs, outputs):
            self.outputs.append(outputs)

        def evaluate(self):
            return {}

    images = torch.arange(2 * 3 * 3 * 4 * 5, dtype=torch.float32).reshape(2, 3, 3, 4, 5)  # [B, T, 3, H, W]
    model, keep = _RecordingModel(), Keep()
    loader = torch.utils.data.DataLoader([images], batch_size=None, collate_fn=lambda batch: {"images": batch})
    inference_on_dataset(model, loader, keep, flip_test=True)
    assert [seen.shape for seen in model.seen] == [images.shape] * 2
    assert torch.equal(model.seen[1], images.flip(dims=[-1]))  # not dimension 3, the height of a tracklet
    assert torch.equal(keep.outputs[0], (images.sum(dim=(1, 2, 3)) + images.flip(-1).sum(dim=(1, 2, 3))) / 2)


def test_the_metric_printer_writes_twice_at_one_iteration():
    from fastreid.utils.events import CommonMetricPrinter, EventStorage

    printer = CommonMetricPrinter(max_iter=1)
    with EventStorage(0) as storage:
        storage.epoch = 0  # as fast-reid's trainer sets it
        storage.put_scalar("total_loss", 1.0)
        printer.write()
        printer.write()  # a one-iteration epoch: after the step, then after the epoch (was ZeroDivisionError)
