"""``python -m BreastFusionLib.networks``: build the US, CT and fusion models and run a synthetic batch.

Prints each model's parameter count, the output for a random 300x300 batch, and the CPU time.
The weights are untrained, so the probabilities are meaningless: this checks the installation.
"""

from __future__ import annotations

import argparse
import time

import torch

from BreastFusionLib.networks import build_classifier

CHANNELS = {"us": 1, "ct": 1, "fusion": 2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--size", type=int, default=300)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; untrained weights (installation check)")
    for modality, channels in CHANNELS.items():
        model = build_classifier(modality).eval()
        batch = torch.rand(args.batch, channels, args.size, args.size)
        start = time.perf_counter()
        with torch.no_grad():
            probabilities = torch.softmax(model(batch), dim=1)
        elapsed = time.perf_counter() - start
        parameters = sum(p.numel() for p in model.parameters())
        print(f"{modality:>6}: input {tuple(batch.shape)} -> P(malignant) {', '.join(f'{p:.3f}' for p in probabilities[:, 1])}"
              f", {parameters / 1e6:.2f} M parameters, {elapsed:.2f} s")


if __name__ == "__main__":
    main()
