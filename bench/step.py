"""One VLD training step (forward, backward, AdamW) at the paper's geometry: this project against
the official code (github Visuang/VLD) in one run, with the same weights and the same batch.

CLIP ViT-B/16 (random weights) at 288x144, T=6, IMLP over 500 identities (HITSZ-VCM), STH from
block 9, STA, every official loss. The official model is built first (bench/official_vld.py: a
scratch copy of a checkout, patched only to run on the CPU); its state dict reaches this project's
model through ``convert_official_state_dict``. Each measurement runs in its own process (peak
RSS, or peak ``torch.cuda.max_memory_allocated`` on a GPU, is that process's own). Prints one
table: seconds per step, peak memory, both against the official code, and the loss and gradient
differences; then this project alone at larger batches, with and without activation checkpointing.
The compared step runs with subnormal floats kept (IEEE) and flushed to zero (FLUSH_DENORMAL, the
default of training), both codes alike; the rest flushed.

    git clone https://github.com/Visuang/VLD /tmp/VLD          # outside this repository
    .venv/bin/python bench/step.py --official /tmp/VLD
    .venv/bin/python bench/step.py --profile                    # where the time and memory go, by module
    bash bench/gpu.sh /tmp/VLD                                  # CUDA, fp16 AMP, the paper's batch
"""

from __future__ import annotations

import fastreid_vld  # noqa: F401  (first: adapts fast-reid and torchvision before they are imported)

# isort: split
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--official", type=Path, help="a checkout of github.com/Visuang/VLD (none: this project only)")
    parser.add_argument("--tracklets", type=int, default=2, help="tracklets per modality of the compared step")
    parser.add_argument("--sweep", type=int, nargs="*", default=[4, 8], help="this project alone at these sizes")
    parser.add_argument("--checkpoint-sweep", type=int, nargs="*", default=[8, 16],
                        help="this project with MODEL.STP/IMLP.GRAD_CHECKPOINT at these sizes")
    parser.add_argument("--classes", type=int, default=500, help="identities of the IMLP prompts (HITSZ-VCM: 500)")
    parser.add_argument("--size", type=int, nargs=2, default=[288, 144], help="frame height and width")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="fp16 autocast and a GradScaler (CUDA)")
    parser.add_argument("--steps", type=int, default=1,
                        help="steps per measurement; with more than one the first is a warm-up and not timed")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temporary one)")
    parser.add_argument("--profile", action="store_true", help="profile this project's step by module instead")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_child(child_spec(args.child))), flush=True)
    elif args.profile:
        profile(args)
    else:
        with tempfile.TemporaryDirectory(prefix="vld-step-") as scratch:
            compare(args, Path(args.workdir or scratch))


# ----------------------------------------------------------------------------- parent


def compare(args: argparse.Namespace, workdir: Path) -> None:
    import torch
    from tabulate import tabulate

    workdir.mkdir(parents=True, exist_ok=True)
    common = {"classes": args.classes, "size": args.size, "device": args.device, "amp": args.amp,
              "steps": args.steps, "workdir": str(workdir)}
    rows, official = [], None
    if args.official:
        from official_vld import random_clip_state_dict, scratch_copy
        common["official_src"] = str(scratch_copy(args.official, workdir, args.device))
        torch.save(random_clip_state_dict(seed=0), workdir / "clip.pt")
    for flush in FLUSH_SETTINGS:  # the compared step under both settings; differences: the last (flushed)
        official = step_child({**common, "code": "official", "tracklets": args.tracklets, "save": True,
                               "flush": flush}) if args.official else None
        ours = step_child({**common, "code": "ours", "tracklets": args.tracklets, "save": True,
                           "from_official": bool(args.official), "flush": flush})
        rows += [row for row in (official, ours) if row]
    for tracklets in args.sweep:
        rows.append(step_child({**common, "code": "ours", "tracklets": tracklets}))
    for tracklets in args.checkpoint_sweep:
        rows.append(step_child({**common, "code": "ours", "tracklets": tracklets, "checkpoint": True}))
    memory = "peak CUDA GB" if args.device == "cuda" else "peak RSS GB"
    officials = {r["flush"]: r for r in rows if r["code"] == "official"}
    table = [[r["code"], r["tracklets"], r["frames"], "on" if r["checkpoint"] else "off", FLUSH_SETTINGS[r["flush"]],
              _fmt(r, "seconds"), _fmt(r, "memory_gb"), _ratio(officials.get(r["flush"]), r, "seconds", invert=True),
              _ratio(officials.get(r["flush"]), r, "memory_gb")] for r in rows]
    print(tabulate(table, headers=["code", "tracklets/modality", "frames", "grad ckpt", "subnormals", "s/step", memory,
                                   "speed-up vs official", "memory vs official"]))
    if official and "seconds" in official and "seconds" in ours:
        print(differences(workdir))


def child(script: str, spec: dict) -> dict:
    """Run one measurement (``script --child spec``) in a fresh interpreter: its ``RESULT``
    line, or ``failed``."""
    process = subprocess.run([sys.executable, script, "--child", json.dumps(spec)], capture_output=True, text=True)
    lines = [line for line in process.stdout.splitlines() if line.startswith("RESULT ")]
    if process.returncode or not lines:
        print(f"{json.dumps(spec)} failed (exit {process.returncode}):\n{process.stderr[-3000:]}", file=sys.stderr)
        return {"failed": f"failed (exit {process.returncode})"}
    return json.loads(lines[-1].removeprefix("RESULT "))


#: FLUSH_DENORMAL settings each compared measurement runs under (in both codes' processes).
FLUSH_SETTINGS = {False: "IEEE", True: "flushed"}


def child_spec(text: str) -> dict:
    """A child's spec (JSON), with its subnormal arithmetic set up first (``flush``: FLUSH_DENORMAL)."""
    import torch
    spec = json.loads(text)
    torch.set_flush_denormal(spec.get("flush", True))
    return spec


def step_child(spec: dict) -> dict:
    return {"code": spec["code"], "tracklets": spec["tracklets"], "frames": 2 * spec["tracklets"] * 6,
            "checkpoint": spec.get("checkpoint", False), "flush": spec.get("flush", True), **child(__file__, spec)}


def differences(workdir: Path) -> str:
    """The loss and the gradients of the two codes after the compared step."""
    import torch
    official = torch.load(workdir / "official_out.pt", weights_only=True)
    ours = torch.load(workdir / "ours_out.pt", weights_only=True)
    loss = abs(ours["loss"] - official["loss"]) / abs(official["loss"])
    worst, worst_name, squared_difference, squared_norm = 0.0, "", 0.0, 0.0
    for name, reference in official["grads"].items():
        difference = ours["grads"][name] - reference
        squared_difference += difference.square().sum().item()
        squared_norm += reference.square().sum().item()
        relative = (difference.norm() / reference.norm()).item() if reference.norm() > 0 else 0.0
        if relative > worst:
            worst, worst_name = relative, name
    return (f"loss: official {official['loss']:.6f}, this project {ours['loss']:.6f}, relative difference {loss:.1e}\n"
            f"gradients ({len(official['grads'])} trainable tensors): |ours - official| / |official| "
            f"{(squared_difference / squared_norm) ** 0.5:.1e} over all of them, at most {worst:.1e} for one "
            f"({worst_name})")


def _fmt(row: dict, key: str) -> str:
    return row.get("failed", "") if key not in row else f"{row[key]:.2f}"


def _ratio(official: dict | None, row: dict, key: str, invert: bool = False) -> str:
    """official / row (or row / official), for rows of the official batch only."""
    if not official or key not in official or key not in row or row["tracklets"] != official["tracklets"]:
        return ""
    ratio = official[key] / row[key] if invert else row[key] / official[key]
    return f"{ratio:.2f}x"


# ----------------------------------------------------------------------------- one measurement


def random_batch(tracklets: int, size: list[int], classes: int):
    """Normalised frames [2K, 6, 3, H, W] (visible block, then infrared) and identities [2K]: K
    tracklets per modality of max(2, min(4, K)) identities (K = 16: the paper's 4 x 4 x 2)."""
    import torch
    generator = torch.Generator().manual_seed(tracklets)
    identities = max(2, min(4, tracklets))
    pids = (torch.arange(tracklets) % identities) * 37 % classes  # [K]
    images = torch.randn(2 * tracklets, 6, 3, *size, generator=generator)
    return images, torch.cat([pids, pids])


def run_child(spec: dict) -> dict:
    import torch
    device = torch.device(spec["device"])
    images, targets = random_batch(spec["tracklets"], spec["size"], spec["classes"])
    if spec["code"] == "official":
        step, parameters = official_step(spec)
    else:
        step, parameters = our_step(spec)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for index in range(spec["steps"]):
        synchronize(device)
        start = time.perf_counter()
        loss = step(images, targets)
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        if index == 0 and spec.get("save"):
            grads = {name: p.grad.detach().float().cpu() for name, p in parameters() if p.grad is not None}
            torch.save({"loss": loss, "grads": grads}, Path(spec["workdir"]) / f"{spec['code']}_out.pt")
    timed = seconds[1:] or seconds
    return {"seconds": sum(timed) / len(timed), "memory_gb": peak_memory(device), "loss": loss}


def official_step(spec: dict):
    import torch
    from official_vld import official_base, official_train_step

    from fastreid_vld.modeling import convert_official_state_dict

    clip = torch.load(Path(spec["workdir"]) / "clip.pt", weights_only=True)
    base = official_base(Path(spec["official_src"]), clip, spec["classes"], seed=1, size=spec["size"])
    del clip
    torch.save(base.model.state_dict(), Path(spec["workdir"]) / "official_init.pt")

    def parameters():  # under this project's names
        return convert_official_state_dict(dict(base.model.named_parameters())).items()

    return (lambda images, targets: official_train_step(base, images, targets)), parameters


def our_model(spec: dict, *opts):
    """This project's VLD (configs/VLD/vcm.yml, random CLIP, frames given normalised), with the
    official model's weights when ``spec["from_official"]``; (cfg, model)."""
    import torch
    from fastreid.config import get_cfg
    from fastreid.modeling import build_model

    from fastreid_vld.modeling import convert_official_state_dict

    cfg = fastreid_vld.add_vld_config(get_cfg())
    cfg.merge_from_file(str(REPO / "configs/VLD/vcm.yml"))
    cfg.merge_from_list(["MODEL.BACKBONE.PRETRAIN", False, "MODEL.DEVICE", spec["device"],
                         "MODEL.HEADS.NUM_CLASSES", spec["classes"], "MODEL.PIXEL_MEAN", [0.0, 0.0, 0.0],
                         "MODEL.PIXEL_STD", [1.0, 1.0, 1.0], "INPUT.SIZE_TRAIN", spec["size"],
                         "INPUT.SIZE_TEST", spec["size"], "SOLVER.AMP.ENABLED", spec["amp"], *opts])
    torch.manual_seed(1)
    model = build_model(cfg)
    if spec.get("from_official"):
        official = torch.load(Path(spec["workdir"]) / "official_init.pt", weights_only=True)
        model.load_state_dict(convert_official_state_dict(official), strict=True)
    return cfg, model


def our_step(spec: dict):
    import torch

    from fastreid_vld.solver import build_vld_optimizer

    checkpoint = spec.get("checkpoint", False)
    cfg, model = our_model(spec, "MODEL.STP.GRAD_CHECKPOINT", checkpoint, "MODEL.IMLP.GRAD_CHECKPOINT", checkpoint)
    model.train()
    optimizer, _ = build_vld_optimizer(cfg, model)
    scaler = torch.amp.GradScaler("cuda", enabled=spec["amp"])

    def step(images: torch.Tensor, targets: torch.Tensor) -> float:
        with torch.autocast(spec["device"], dtype=torch.float16, enabled=spec["amp"]):
            loss = sum(model({"images": images, "targets": targets}).values())
        optimizer.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.item()

    return step, model.named_parameters


def synchronize(device) -> None:
    import torch
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_memory(device) -> float:
    """GB: the process's peak RSS, or the peak CUDA memory allocated on a GPU."""
    import resource

    import torch
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


# ----------------------------------------------------------------------------- profile


def profile(args: argparse.Namespace) -> None:
    """This project's step by module: forward seconds and the activations each keeps for backward."""
    import torch
    from tabulate import tabulate

    from fastreid_vld.modeling.backbones import stp
    from fastreid_vld.modeling.heads import imlp

    spec = {"code": "ours", "tracklets": args.tracklets, "classes": args.classes, "size": args.size,
            "device": args.device, "amp": args.amp, "checkpoint": False}
    step, parameters = our_step(spec)
    model_parameters = {p.untyped_storage().data_ptr() for _, p in parameters()}
    seconds: dict[str, float] = {}
    saved: dict[str, int] = {}
    seen: set[int] = set()
    current = ["other forward (classifiers, pooling, losses)"]

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        pointer = tensor.untyped_storage().data_ptr()
        if pointer not in seen and pointer not in model_parameters:
            seen.add(pointer)
            saved[current[-1]] = saved.get(current[-1], 0) + tensor.untyped_storage().nbytes()
        return tensor

    def timed(label: str, function):
        def wrapper(*a, **k):
            current.append(label)
            start = time.perf_counter()
            try:
                return function(*a, **k)
            finally:
                seconds[label] = seconds.get(label, 0.0) + time.perf_counter() - start
                current.pop()
        return wrapper

    stp.residual_block = timed("image tower: transformer blocks", stp.residual_block)
    imlp.residual_block = timed("text tower: transformer blocks", imlp.residual_block)
    for module, method, label in ((stp.STPBackbone, "forward", "image tower: embedding, STH, STA"),
                                  (imlp.FrozenTextEncoder, "forward", "text tower: prompts, ln, projection"),
                                  (torch.optim.AdamW, "step", "AdamW step")):
        setattr(module, method, timed(label, getattr(module, method)))
    backward = torch.Tensor.backward
    torch.Tensor.backward = timed("backward (all modules)", backward)
    images, targets = random_batch(args.tracklets, args.size, args.classes)
    start = time.perf_counter()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        step(images, targets)
    total = time.perf_counter() - start
    nested = {"image tower: embedding, STH, STA": "image tower: transformer blocks",
              "text tower: prompts, ln, projection": "text tower: transformer blocks"}
    for outer, inner in nested.items():  # the outer timers include the blocks
        seconds[outer] -= seconds.get(inner, 0.0)
    seconds["other forward (classifiers, pooling, losses)"] = total - sum(seconds.values())
    rows = [[label, f"{value:.2f}", f"{100 * value / total:.0f}%", f"{saved.get(label, 0) / 1e9:.2f}"]
            for label, value in sorted(seconds.items(), key=lambda item: -item[1])]
    print(f"one step, {args.tracklets} tracklets per modality, {args.classes} identities, {total:.1f} s")
    print(tabulate(rows, headers=["part", "seconds", "share", "kept for backward GB"]))


if __name__ == "__main__":
    main()
