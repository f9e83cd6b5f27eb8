"""Throughput of the US, CT and fusion networks: inference and training images/s.

For each model and memory layout (contiguous, channels_last) it times ``--iters`` batches after
``--warmup`` batches: inference is a no-grad forward in eval mode; training is forward + cross-entropy
+ backward + an SGD step. With ``--amp`` it adds autocast (bf16 on CPU, fp16 on CUDA) with
channels_last. Prints the machine and a table with the channels_last / contiguous ratios.

    python training/bench_networks.py                         # CPU, 300x300, batch 8
    python training/bench_networks.py --device cuda --amp     # on a GPU machine
    python training/bench_networks.py --backbone cbam_efficientnet_lite0 --freeze last_stage --size 224
"""

from __future__ import annotations

import argparse
import platform
import time
from contextlib import nullcontext

import torch

from BreastFusionLib.networks import BACKBONES, build_classifier
from BreastFusionLib.networks.pretrained import FREEZE_MODES

CHANNELS = {"us": 1, "ct": 1, "fusion": 2}


def machine(device: torch.device) -> str:
    """One line naming the processor (or GPU), core count, torch version and threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as handle:
            cpu = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images_per_second(modality: str, mode: str, layout: str, args: argparse.Namespace) -> float:
    """Time ``args.iters`` batches of ``mode`` ("inference" or "training") for one model and layout."""
    device = torch.device(args.device)
    memory_format = torch.channels_last if layout != "contiguous" else torch.contiguous_format
    model = build_classifier(modality, backbone=args.backbone, freeze=args.freeze).to(device, memory_format=memory_format)
    image = torch.rand(args.batch, CHANNELS[modality], args.size, args.size, device=device)
    image = image.contiguous(memory_format=memory_format)
    labels = torch.randint(0, 2, (args.batch,), device=device)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    autocast = torch.autocast(device.type, dtype=amp_dtype) if layout == "amp+channels_last" else nullcontext()

    def step() -> None:
        if mode == "inference":
            with torch.no_grad(), autocast:
                model(image)
            return
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = torch.nn.functional.cross_entropy(model(image), labels)
        loss.backward()
        optimizer.step()

    model.train(mode == "training")
    for _ in range(args.warmup):
        step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(args.iters):
        step()
    _sync(device)
    return args.batch * args.iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="add an autocast + channels_last column")
    parser.add_argument("--models", default="us,ct,fusion")
    parser.add_argument("--backbone", choices=BACKBONES, default="cbam_resnet50")
    parser.add_argument("--freeze", choices=FREEZE_MODES, default="none", help="what training leaves fixed")
    args = parser.parse_args()
    layouts = ["contiguous", "channels_last"] + (["amp+channels_last"] if args.amp else [])
    print(f"machine: {machine(torch.device(args.device))}")
    print(f"{args.backbone}, freeze {args.freeze}; input {args.size}x{args.size}, batch {args.batch}, "
          f"{args.iters} timed batches after {args.warmup} warm-up\n")
    header = "| model | mode | " + " | ".join(f"{layout} img/s" for layout in layouts) + " | channels_last / contiguous |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for modality in args.models.split(","):
        for mode in ("inference", "training"):
            rates = [images_per_second(modality, mode, layout, args) for layout in layouts]
            cells = " | ".join(f"{rate:.1f}" for rate in rates)
            print(f"| {modality} | {mode} | {cells} | {rates[1] / rates[0]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
