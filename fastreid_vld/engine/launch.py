"""One process group for every process of a run, whichever launcher started them: torchrun, which starts
the processes itself and describes each in its environment (env://), or fast-reid's ``launch``
(``--num-gpus``, ``--num-machines``, ``--machine-rank``, ``--dist-url``), which spawns them on each machine.
Both join the group through :func:`run_in_process_group`."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from fastreid.engine import launch as fastreid_launch  # compat's: gloo on the CPU, the one-process result
from fastreid.utils import comm

from .defaults import available_cpus

__all__ = ["LaunchError", "TORCHRUN_VARIABLES", "TorchrunProcess", "launch", "run_in_process_group",
           "torchrun_environment"]

#: what torchrun (torch.distributed.run) sets for every process it starts: the env:// description of the run
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")

#: fast-reid's launcher flags (argparse name: flag, default, torchrun's flag for the same thing)
FASTREID_LAUNCHER_FLAGS = {"num_gpus": ("--num-gpus", 1, "--nproc_per_node"),
                           "num_machines": ("--num-machines", 1, "--nnodes"),
                           "machine_rank": ("--machine-rank", 0, "--node_rank")}


class LaunchError(ValueError):
    """Launcher flags or variables that contradict each other or the machine."""


class TorchrunProcess(NamedTuple):
    """This process's place in a torchrun run (its MASTER_ADDR / MASTER_PORT are read by env:// itself)."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int


def torchrun_environment(environ: Mapping[str, str] = os.environ) -> TorchrunProcess | None:
    """This process's place from :data:`TORCHRUN_VARIABLES` when torchrun started it, None when none is
    set; :class:`LaunchError` when only some are (an env:// launch would fail or, worse, each process would
    train alone)."""
    found = [name for name in TORCHRUN_VARIABLES if name in environ]
    if not found:
        return None
    missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
    if missing:
        raise LaunchError(f"{', '.join(found)} set but not {', '.join(missing)}: expected all of "
                          f"{', '.join(TORCHRUN_VARIABLES)} (torchrun sets them) or none")
    return TorchrunProcess(*(int(environ[name]) for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")))


def check_launcher_flags(args: argparse.Namespace, under_torchrun: bool) -> None:
    """fast-reid's launcher flags in ``args`` make sense for the launcher: none under torchrun (it started
    the processes already), a machine rank below the machine count and an address every machine can
    reach otherwise. :class:`LaunchError` naming the flag if not."""
    if under_torchrun:
        for name, (flag, default, torchrun_flag) in FASTREID_LAUNCHER_FLAGS.items():
            if getattr(args, name) != default:
                raise LaunchError(f"{flag} {getattr(args, name)} under torchrun, which started the processes "
                                  f"already: use torchrun's {torchrun_flag} and leave {flag} out")
        return
    if not 0 <= args.machine_rank < args.num_machines:
        raise LaunchError(f"--machine-rank {args.machine_rank}: expected 0 to {args.num_machines - 1} "
                          f"(--num-machines {args.num_machines})")
    if args.num_machines > 1 and args.dist_url == "auto":
        raise LaunchError(f"--dist-url auto with --num-machines {args.num_machines}: auto picks a port on this "
                          "machine that the others cannot know; give every machine the same "
                          "--dist-url tcp://HOST:PORT of machine 0")


def launch(main_func: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """``main_func(args)`` on every process of the run, which returns its result on this process.

    Under torchrun (its variables set) this process joins the group they describe (env://); otherwise
    fast-reid's ``launch`` spawns ``args.num_gpus`` processes on this machine, one of ``args.num_machines``,
    joining at ``args.dist_url``. :class:`LaunchError` for launcher flags that do not fit the launcher. A
    spawned process that exits non-zero has said why (its ``error:`` line or traceback): this process exits
    with its status, without the spawner's traceback on top."""
    torchrun = torchrun_environment()
    check_launcher_flags(args, under_torchrun=torchrun is not None)
    if torchrun is not None:
        return run_in_process_group(main_func, (args,), init_method="env://", **torchrun._asdict())
    try:
        return fastreid_launch(main_func, args.num_gpus, num_machines=args.num_machines,
                               machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    except mp.ProcessExitedException as error:
        if error.exit_code > 0:
            raise SystemExit(error.exit_code) from None
        raise SystemExit(f"error: {error}") from None  # killed by a signal: nothing said why


def run_in_process_group(main_func: Callable[..., Any], args: tuple, *, init_method: str, rank: int,
                         world_size: int, local_rank: int, local_world_size: int) -> Any:
    """``main_func(*args)`` as process ``rank`` of ``world_size``, the ``local_rank``-th of the
    ``local_world_size`` processes on this machine (one machine's ranks consecutive, as both launchers
    number them), in the process group joined at ``init_method``: nccl on CUDA device ``local_rank``
    (pinned before joining), gloo without CUDA, each process then with its part of the machine's CPUs as
    torch threads (unless OMP_NUM_THREADS says; torchrun sets 1). fast-reid's per-machine group is set, so
    ``comm.get_local_rank()`` / ``get_local_size()`` answer; the group is destroyed when ``main_func``
    returns or raises (left to interpreter exit, gloo's threads can abort the process)."""
    use_cuda = torch.cuda.is_available()
    if use_cuda:
        if local_world_size > torch.cuda.device_count():
            raise LaunchError(f"{local_world_size} processes on this machine but only "
                              f"{torch.cuda.device_count()} CUDA devices are visible")
        torch.cuda.set_device(local_rank)
    elif "OMP_NUM_THREADS" not in os.environ:  # every process would use every CPU: they would contend
        torch.set_num_threads(max(1, available_cpus() // local_world_size))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo", init_method=init_method,
                            world_size=world_size, rank=rank)
    try:
        comm.synchronize()  # as fast-reid's worker: prevents a timeout after init_process_group
        comm._LOCAL_PROCESS_GROUP = _machine_process_group(rank, world_size, local_world_size)
        return main_func(*args)
    finally:
        comm._LOCAL_PROCESS_GROUP = None
        dist.destroy_process_group()


def _machine_process_group(rank: int, world_size: int, local_world_size: int) -> dist.ProcessGroup:
    """The group of the processes on this process's machine. Creating a group is collective: every process
    creates every machine's, in the same order, and keeps its own."""
    groups = [dist.new_group(list(range(first, first + local_world_size)))
              for first in range(0, world_size, local_world_size)]
    return groups[rank // local_world_size]
