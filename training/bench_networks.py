"""Throughput of the US, CT and fusion networks: inference and training images/s, plain and through the bundle.

For each model and memory layout (contiguous, channels_last) it times ``--iters`` batches after
``--warmup`` batches: inference is a no-grad forward in eval mode; training is forward + cross-entropy
+ backward + an SGD step. With ``--amp`` it adds autocast (bf16 on CPU, fp16 on CUDA) with
channels_last. Prints the machine and a table with the channels_last / contiguous ratios.

``--bundle`` also trains each model through the bundle itself (``monai_bundle/configs/train.json``
run by MONAI's ``ConfigWorkflow``: data loading and augmentation from PNG crops, AdamW, the bundle's
``amp`` and ``channels_last`` defaults) on synthetic crops of ``--size``, timing ``--iters``
iterations after ``--warmup``, and prints its images/s as a ratio of the best plain configuration
measured in the same run (``--bundle`` implies ``--amp``).

On a busy machine wall-clock rates measure the other processes too: ``--threads 1 --cpu-time``
rates every configuration by this thread's CPU time instead (one torch thread; the bundle then
loads its data in this process, ``num_workers`` 0, so that its data loading is counted).

    python training/bench_networks.py                         # CPU, 300x300, batch 8
    python training/bench_networks.py --bundle --models us    # + the bundle's training, as a ratio
    python training/bench_networks.py --device cuda --amp     # on a GPU machine
    python training/bench_networks.py --backbone cbam_efficientnet_lite0 --freeze last_stage --size 224
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from BreastFusionLib.cohort.manifest import write_manifest
from BreastFusionLib.networks import BACKBONES, build_classifier
from BreastFusionLib.networks.pretrained import FREEZE_MODES

CHANNELS = {"us": 1, "ct": 1, "fusion": 2}
CONFIGS = Path(__file__).resolve().parents[1] / "monai_bundle" / "configs"


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
    start = args.clock()
    for _ in range(args.iters):
        step()
    _sync(device)
    return args.batch * args.iters / (args.clock() - start)


def synthetic_crops(folder: Path, train_cases: int, size: int) -> Path:
    """A prepared-crops manifest of random ``size`` x ``size`` US and CT crops: ``train_cases`` for training, 2 for validation."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(train_cases + 2):
        for modality in ("us", "ct"):
            pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"c{index}_{modality}.png")
        rows.append({"case_id": f"c{index}", "patient_id": f"p{index}", "label": ("benign", "malignant")[index % 2],
                     "us_image": f"c{index}_us.png", "ct_image": f"c{index}_ct.png",
                     "split": "train" if index < train_cases else "val", "prepared": "crops"})
    return write_manifest(rows, folder / "manifest.csv")


def bundle_images_per_second(modality: str, args: argparse.Namespace) -> float:
    """Training images/s of ``modality`` through the bundle's own trainer (train.json, its defaults)."""
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        synthetic_crops(root, args.batch * (args.warmup + args.iters), args.size)
        settings = {"num_workers": 0} if args.cpu_time else {}
        workflow = ConfigWorkflow(config_file=str(CONFIGS / "train.json"), workflow_type="train",
                                  logging_file=str(CONFIGS / "logging.conf"), meta_file=str(CONFIGS / "metadata.json"),
                                  bundle_root=str(root / "bundle"), dataset_dir=str(root), modality=modality,
                                  spatial_size=args.size, batch_size=args.batch, max_epochs=1, backbone=args.backbone,
                                  freeze=args.freeze, device=torch.device(args.device), resume=False, **settings)
        logging.disable(logging.INFO)  # the bundle's per-epoch log lines
        try:
            workflow.initialize()
            stamps = []
            workflow.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: stamps.append(args.clock()))
            workflow.run()
            workflow.finalize()
        finally:
            logging.disable(logging.NOTSET)
    timed = stamps[args.warmup - 1 :]  # from the end of the last warm-up iteration
    return args.batch * (len(timed) - 1) / (timed[-1] - timed[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", action="store_true", help="add an autocast + channels_last column")
    parser.add_argument("--bundle", action="store_true", help="also train through the bundle (train.json) and compare")
    parser.add_argument("--models", default="us,ct,fusion")
    parser.add_argument("--backbone", choices=BACKBONES, default="cbam_resnet50")
    parser.add_argument("--freeze", choices=FREEZE_MODES, default="none", help="what training leaves fixed")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice, one per core)")
    parser.add_argument("--cpu-time", action="store_true", help="rate by this thread's CPU time (needs --threads 1)")
    args = parser.parse_args()
    if args.cpu_time and args.threads != 1:
        parser.error("--cpu-time needs --threads 1 (other threads' work would not be counted)")
    if args.bundle and args.warmup < 1:
        parser.error("--bundle needs --warmup 1 or more (the first iteration's start is not observable)")
    if args.threads:
        torch.set_num_threads(args.threads)
    args.clock = time.thread_time if args.cpu_time else time.perf_counter
    layouts = ["contiguous", "channels_last"] + (["amp+channels_last"] if args.amp or args.bundle else [])
    print(f"machine: {machine(torch.device(args.device))}; {'thread CPU time' if args.cpu_time else 'wall-clock time'}")
    print(f"{args.backbone}, freeze {args.freeze}; input {args.size}x{args.size}, batch {args.batch}, "
          f"{args.iters} timed batches after {args.warmup} warm-up\n")
    header = "| model | mode | " + " | ".join(f"{layout} img/s" for layout in layouts) + " | channels_last / contiguous |"
    if args.bundle:
        header += " bundle img/s | bundle / best plain |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for modality in args.models.split(","):
        for mode in ("inference", "training"):
            rates = [images_per_second(modality, mode, layout, args) for layout in layouts]
            cells = " | ".join(f"{rate:.1f}" for rate in rates)
            line = f"| {modality} | {mode} | {cells} | {rates[1] / rates[0]:.2f}x |"
            if args.bundle:
                bundle = bundle_images_per_second(modality, args) if mode == "training" else None
                line += f" {bundle:.1f} | {bundle / max(rates):.2f}x |" if bundle else " - | - |"
            print(line, flush=True)


if __name__ == "__main__":
    main()
