"""Frozen-extractor feature caching: epoch time with features cached once vs recomputed every epoch.

With the whole extractor frozen (the paper's transfer-learning mode) the frozen part's output does
not change during training, so it can be computed once and reused by every epoch, at the price of
no augmentation (the cached crops are the un-augmented ones). This script measures both ways on
``--images`` crops of a prepared BUSI folder:

- ``cached``: one feature pass with the evaluation transforms (timed once), then each epoch trains
  the trainable part on the cached tensors;
- ``recomputed``: each epoch runs the training transforms (augmentation), the frozen forward and the
  trainable step (``num_workers=0``: all the work in this process, as on a 2-core machine).

What is cached: for CBAM-EfficientNet-Lite0, the last-stage map before its CBAM (CBAM + head keep
training on it); for CBAM-ResNet-50, whose CBAM modules sit inside every bottleneck, the pooled
2048 features with CBAM frozen too (``train_cbam=False``: only the head trains). ``--throughput``
times images/s at ``--size`` (inference, full training, frozen training) of CBAM-EfficientNet-Lite0
and CBAM-ResNet-50 side by side (``--layouts``), like ``training/bench_networks.py``; ``--backbones ''``
skips the caching part. ``--probe`` adds a 5-fold linear probe (logistic regression) on cached,
pooled Lite0 features of every case: what the frozen features can reach once epochs cost nothing.

    python training/bench_feature_cache.py --dataset /tmp/busi --images 64 --size 300 --epochs 2 --throughput
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from BreastFusionLib.bundle import load_datalist
from BreastFusionLib.networks import build_classifier
from BreastFusionLib.transform_config import eval_transforms, train_transforms


def _split(backbone: str) -> tuple[nn.Module, callable, callable]:
    """(model, frozen part: image -> cached tensor, trainable part: cached tensor -> logits)."""
    if backbone == "cbam_efficientnet_lite0":
        model = build_classifier("us", backbone=backbone, pretrained="imagenet", freeze="backbone")
        net = model.backbone
        return model, net.feature_map, lambda f: model.head(torch.mean(net.cbam(f), dim=(2, 3)))
    model = build_classifier("us", backbone=backbone, freeze="backbone", train_cbam=False)
    return model, model.backbone, model.head


def _batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def epoch_times(backbone: str, cases: list[dict], args: argparse.Namespace) -> dict:
    """Seconds per epoch with cached features and with recomputed (augmented) features."""
    model, frozen, trainable = _split(backbone)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()

    def step(features: torch.Tensor, labels: torch.Tensor) -> None:
        optimizer.zero_grad()
        loss_fn(trainable(features), labels).backward()
        optimizer.step()

    def load(transform, batch: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        items = [transform(dict(case)) for case in batch]
        return torch.stack([torch.as_tensor(item["image"]) for item in items]), torch.tensor([c["label"] for c in batch])

    evaluation, training = eval_transforms("us", args.size), train_transforms("us", args.size)
    started = time.perf_counter()
    cache = []
    with torch.no_grad():
        for batch in _batches(cases, args.batch):
            images, labels = load(evaluation, batch)
            cache.append((frozen(images), labels))
    feature_pass = time.perf_counter() - started
    cached = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for index in torch.randperm(len(cache)).tolist():
            step(*cache[index])
        cached.append(time.perf_counter() - started)
    recomputed = []
    for _ in range(args.epochs):
        started = time.perf_counter()
        for batch in _batches(cases, args.batch):
            images, labels = load(training, batch)
            with torch.no_grad():
                features = frozen(images)
            step(features, labels)
        recomputed.append(time.perf_counter() - started)
    shape = tuple(cache[0][0].shape[1:])
    return {"backbone": backbone, "images": len(cases), "size": args.size, "cached_tensor_per_image": list(shape),
            "cache_megabytes_per_1000_images": round(1000 * torch.Size(shape).numel() * 4 / 1e6, 1),
            "feature_pass_seconds": round(feature_pass, 2), "cached_epoch_seconds": [round(t, 3) for t in cached],
            "recomputed_epoch_seconds": [round(t, 2) for t in recomputed],
            "speedup_per_epoch": round(min(recomputed) / max(min(cached), 1e-6), 1)}


def linear_probe(args: argparse.Namespace) -> dict:
    """Cross-validated AUC of a logistic regression on cached, pooled ImageNet Lite0 features.

    One feature pass over every case (evaluation transforms), then per test fold k (validation
    fold k+1 picks C, the other folds train): what a frozen extractor's features can give once
    training epochs cost nothing.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from BreastFusionLib.evaluation.delong import delong_auc

    manifest = str(args.dataset / "manifest.csv")
    model = build_classifier("us", backbone="cbam_efficientnet_lite0", pretrained="imagenet", freeze="backbone").eval()
    transform = eval_transforms("us", args.size)
    folds = sorted({int(c["fold"]) for c in _manifest_rows(manifest)})
    fold_of = {c["case_id"]: int(c["fold"]) for c in _manifest_rows(manifest)}
    cases = load_datalist(manifest, "us", None)
    started = time.perf_counter()
    features = []
    with torch.no_grad():
        for batch in _batches(cases, args.batch):
            images = torch.stack([torch.as_tensor(transform(dict(c))["image"]) for c in batch])
            features.append(torch.mean(model.backbone.feature_map(images), dim=(2, 3)))
    features = torch.cat(features).numpy()
    seconds = time.perf_counter() - started
    labels = np.array([c["label"] for c in cases])
    fold = np.array([fold_of[c["case_id"]] for c in cases])
    scores, per_fold = np.zeros(len(cases)), []
    for k in folds:
        val = (k + 1) % len(folds)
        train, validation, test = ~np.isin(fold, [k, val]), fold == val, fold == k

        def fit(c: float):
            return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, class_weight="balanced")).fit(
                features[train], labels[train])

        best = max((0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0),
                   key=lambda c: roc_auc_score(labels[validation], fit(c).predict_proba(features[validation])[:, 1]))
        scores[test] = fit(best).predict_proba(features[test])[:, 1]
        per_fold.append({"fold": k, "C": best, "auc": round(float(roc_auc_score(labels[test], scores[test])), 4)})
    aucs = np.array([f["auc"] for f in per_fold])
    return {"size": args.size, "feature_pass_seconds": round(seconds, 1), "cases": len(cases), "folds": per_fold,
            "auc_fold_mean": round(float(aucs.mean()), 4), "auc_fold_sd": round(float(aucs.std(ddof=1)), 4),
            "auc_pooled": delong_auc(labels, scores)}


def _manifest_rows(manifest: str) -> list[dict]:
    import csv

    with open(manifest, newline="") as handle:
        return list(csv.DictReader(handle))


def throughput(args: argparse.Namespace) -> list[dict]:
    """Images/s at ``args.size`` of each ``--throughput-backbones`` model: inference, training, frozen training.

    The backbones are timed side by side in one run, so their ratio holds even on a loaded machine.
    """
    rows = []
    for layout, backbone in ((layout, backbone) for layout in args.layouts.split(",")
                             for backbone in args.throughput_backbones.split(",")):
        memory_format = torch.channels_last if layout == "channels_last" else torch.contiguous_format
        for mode, freeze in (("inference", "none"), ("training", "none"), ("frozen training (CBAM + head)", "backbone")):
            model = build_classifier("us", backbone=backbone, freeze=freeze)
            model = model.to(memory_format=memory_format)
            image = torch.rand(args.batch, 1, args.size, args.size).contiguous(memory_format=memory_format)
            labels = torch.randint(0, 2, (args.batch,))
            optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3)

            def run() -> None:
                if mode == "inference":
                    model.eval()
                    with torch.no_grad():
                        model(image)
                    return
                model.train()
                optimizer.zero_grad()
                nn.functional.cross_entropy(model(image), labels).backward()
                optimizer.step()

            for _ in range(args.warmup):
                run()
            started = time.perf_counter()
            for _ in range(args.iters):
                run()
            rows.append({"backbone": backbone, "layout": layout, "mode": mode,
                         "images_per_second": round(args.batch * args.iters / (time.perf_counter() - started), 1)})
            print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", type=Path, required=True, help="a folder written by training/prepare_busi.py")
    parser.add_argument("--images", type=int, default=64, help="crops used (the first N of the manifest)")
    parser.add_argument("--size", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--throughput", action="store_true", help="also time images/s of --throughput-backbones")
    parser.add_argument("--throughput-backbones", default="cbam_efficientnet_lite0,cbam_resnet50")
    parser.add_argument("--layouts", default="channels_last", help="contiguous and/or channels_last")
    parser.add_argument("--backbones", default="cbam_efficientnet_lite0,cbam_resnet50")
    parser.add_argument("--probe", action="store_true",
                        help="also: 5-fold logistic-regression AUC on cached pooled Lite0 features of every case")
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cases = load_datalist(str(args.dataset / "manifest.csv"), "us", None)[: args.images]
    results = {"threads": torch.get_num_threads(), "torch": torch.__version__, "caching": []}
    for backbone in filter(None, args.backbones.split(",")):
        results["caching"].append(epoch_times(backbone, cases, args))
        print(json.dumps(results["caching"][-1]), flush=True)
    if args.probe:
        results["linear_probe"] = linear_probe(args)
        print(json.dumps(results["linear_probe"]), flush=True)
    if args.throughput:
        results["throughput"] = {"size": args.size, "batch": args.batch, "rows": throughput(args)}
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
