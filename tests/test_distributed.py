"""One objective on any number of processes and micro-batches (fastreid_vld/distributed.py,
modeling/global_batch.py): the first training step of the tiny VLD (and of VideoBaseline's batch
terms) on 2 gloo processes, and in micro-batches, against one process on the whole batch.

Each process holds every 2nd tracklet of the global batch; the losses must equal the one-process
losses and the gradients after DDP's averaging the one-process gradients."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fastreid.utils.events import EventStorage
from tiny_vld import T, random_batch, tiny_cfg
from torch.nn.parallel import DistributedDataParallel

from fastreid_vld.config import ConfigError
from fastreid_vld.distributed import batch_share, gather_batch, gather_rows, row_shard
from fastreid_vld.modeling.global_batch import per_tracklet_outputs

TRACKLETS = 16  # the global batch: 4 identities x 2 tracklets x 2 modalities, as configs/VLD/tiny.yml
WORLD_SIZE = 2
CHECKPOINTED = ("MODEL.STP.GRAD_CHECKPOINT", True, "MODEL.IMLP.GRAD_CHECKPOINT", True)
#: a VideoBaseline (BoT: CE + hard-mining triplet over the batch, BNneck) whose ResNet-18 has no batch
#: statistics (GroupNorm), so the whole step is the one-process step
VIDEO_BASELINE = ("configs/VideoBaseline/vcm_r50.yml", "MODEL.BACKBONE.DEPTH", "18x", "MODEL.BACKBONE.NORM", "GN",
                  "MODEL.BACKBONE.PRETRAIN", False, "MODEL.HEADS.NUM_CLASSES", 5, "INPUT.SIZE_TRAIN", [64, 32],
                  "INPUT.SIZE_TEST", [64, 32], "MODEL.DEVICE", "cpu")
#: case -> (config file, overrides); 5 identities, so the 2 processes' prompt shards are uneven (3 + 2)
CASES = {
    "vld": ("configs/VLD/tiny.yml", "MODEL.HEADS.NUM_CLASSES", 5),
    "vld-micro-batches-checkpointed": ("configs/VLD/tiny.yml", "MODEL.HEADS.NUM_CLASSES", 5,
                                       "SOLVER.MICRO_BATCH_SIZE", 3, *CHECKPOINTED),
    "video-baseline": VIDEO_BASELINE,
}


def first_step(config: str, *opts, world_size: int = 1, rank: int = 0
               ) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
    """The model's losses and gradients of one step on the global batch, this process holding its share
    (DDP-wrapped under torch.distributed, so the gradients are the averaged ones)."""
    from fastreid.modeling import build_model
    torch.manual_seed(0)  # the same weights everywhere
    model = build_model(tiny_cfg(*opts, config=config)).train()
    batch = random_batch(seed=1, tracklets=TRACKLETS)
    share = torch.tensor(batch_share(range(TRACKLETS), rank, world_size))
    inputs = {key: value[share] for key, value in batch.items()}
    wrapped = DistributedDataParallel(model) if world_size > 1 else model
    with EventStorage():  # fast-reid's Baseline logs its classifier's accuracy
        losses = wrapped(inputs)
    sum(losses.values()).backward()
    return ({name: loss.item() for name, loss in losses.items()},
            {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})


def _worker(rank: int, init_file: str, results: dict) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD_SIZE)
    torch.set_num_threads(1)
    try:
        for name, opts in CASES.items():
            step = first_step(*opts, world_size=WORLD_SIZE, rank=rank)
            if rank == 0:
                results[name] = step
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> dict:
    """Every case's first step on 2 gloo processes (rank 0's view)."""
    init_file = tmp_path_factory.mktemp("dist") / "init"
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_worker, args=(str(init_file), results), nprocs=WORLD_SIZE)
        return dict(results)


def assert_same_step(step, reference, grad_rtol: float = 1e-5) -> None:
    (losses, grads), (ref_losses, ref_grads) = step, reference
    assert losses.keys() == ref_losses.keys()
    for name, value in ref_losses.items():
        assert losses[name] == pytest.approx(value, rel=1e-5), name
    assert grads.keys() == ref_grads.keys() and len(grads) > 20
    for name, ref in ref_grads.items():
        assert torch.linalg.norm(grads[name] - ref) <= grad_rtol * torch.linalg.norm(ref) + 1e-9, name


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_two_processes_train_the_one_process_step(two_processes, case):
    """Losses to 1e-5 relative, every gradient (the prompt context vectors' included: each process runs
    its shard of the prompts) to 1e-5 of its norm, with and without micro-batches and checkpointing."""
    if case == "video-baseline":
        # the GroupNorm affine gradients sum over every position of every frame: measured 1.4e-5 apart
        assert_same_step(two_processes[case], first_step(*VIDEO_BASELINE), grad_rtol=5e-5)
    else:  # measured: losses 2.2e-7, gradients 3.0e-6 apart at most
        assert_same_step(two_processes[case], first_step(*CASES["vld"]))


def test_micro_batches_give_the_whole_batch_step():
    reference = first_step(*CASES["vld"])
    for micro_batch in (4, 5):  # one that divides the batch, one that leaves a smaller last micro-batch
        assert_same_step(first_step(*CASES["vld"], "SOLVER.MICRO_BATCH_SIZE", micro_batch), reference)
    assert_same_step(first_step(*CASES["vld"], "SOLVER.MICRO_BATCH_SIZE", 2, *CHECKPOINTED), reference)
    assert_same_step(first_step(*VIDEO_BASELINE, "SOLVER.MICRO_BATCH_SIZE", 3), first_step(*VIDEO_BASELINE))


def test_the_forward_of_micro_batches_keeps_no_activation():
    """What autograd keeps of the per-tracklet part's forward: in micro-batches the frames alone (each
    micro-batch's activations come back in the backward pass), on the whole batch every block's."""
    torch.manual_seed(0)
    from fastreid.modeling import build_model
    model = build_model(tiny_cfg()).train()
    frames = model.preprocess_image(random_batch(tracklets=TRACKLETS))  # [16 * T, 3, H, W]

    def saved_bytes(micro_batch: int) -> int:
        total = 0

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += tensor.numel() * tensor.element_size()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            per_tracklet_outputs(model.tracklet_features, frames, T, micro_batch)
        return total

    frame_bytes = frames.numel() * frames.element_size()
    assert saved_bytes(2) == frame_bytes
    assert saved_bytes(0) > 5 * frame_bytes


def test_without_torch_distributed_the_gathers_are_the_identity():
    x = torch.randn(6, 3)
    assert gather_batch(x) is x and gather_rows(x, 6) is x and row_shard(6) == slice(0, 6)


@pytest.mark.parametrize("opts, message", [
    (("SOLVER.IMS_PER_BATCH", 14), "SOLVER.IMS_PER_BATCH 14: expected 2 modalities x DATALOADER.NUM_INSTANCE (2)"),
    (("SOLVER.IMS_PER_BATCH", 12),
     "SOLVER.IMS_PER_BATCH 12: expected a multiple of 8: it is the global batch, split evenly over 8 processes"),
    (("TEST.IMS_PER_BATCH", 4), "TEST.IMS_PER_BATCH 4: expected at least one tracklet for each of the 8 processes"),
])
def test_a_batch_that_cannot_be_split_is_one_error_naming_both_numbers(monkeypatch, opts, message):
    from fastreid.utils import comm

    from fastreid_vld.config import check_batch_split
    monkeypatch.setattr(comm, "get_world_size", lambda: 8)
    cfg = tiny_cfg("DATASETS.NAMES", ("VCM",), "SOLVER.IMS_PER_BATCH", 16, "TEST.IMS_PER_BATCH", 16, *opts)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_batch_split(cfg)


def test_micro_batches_are_refused_for_a_backbone_with_batch_norm():
    from fastreid.modeling import build_model
    with pytest.raises(ConfigError, match="SOLVER.MICRO_BATCH_SIZE 2: VLD's backbone has BatchNorm layers"):
        build_model(tiny_cfg("MODEL.BACKBONE.NAME", "build_resnet_backbone", "MODEL.BACKBONE.DEPTH", "18x",
                             "SOLVER.MICRO_BATCH_SIZE", 2))
