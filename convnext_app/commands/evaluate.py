"""``convnext evaluate``: accuracy, per-class accuracy and confusions of a classifier on an ImageFolder."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, TextIO

from convnext_app.precision import add_precision_option
from convnext_app.runtimes import add_runtime_option

from .common import (
    add_framework_option, add_model_option, model_source, positive_int, print_table, resolve_framework, warn,
)

HELP = "accuracy and confusion summary on an ImageFolder"
DESCRIPTION = ("Accuracy, per-class accuracy and the most frequent confusions of a classifier on a folder "
               "with one sub-folder per class (named with the model's label names).")
EPILOG = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR",
                   help="an ImageFolder: one sub-folder per class, named with the model's label names")
    add_model_option(p)
    add_precision_option(p)
    add_runtime_option(p)
    add_framework_option(p, ["pt", "tf"])
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON (accuracy, per-class, confusion matrix)")
    p.add_argument("--confusion-png", metavar="FILE", default=None,
                   help='write the confusion matrix as a PNG with the label names (needs the plot extra: '
                        'pip install "convnext-twins[plot]")')


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from .common import prepared_precision

    with prepared_precision(args, "classification"):
        return _run(args, out)


def _run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    import numpy as np

    from convnext_app.imagefolder import scan_image_folder
    from convnext_app.inference import batched_logits, load_classifier, load_processor

    out = out or sys.stdout
    model_dir = model_source(args)
    framework = resolve_framework(args.framework)[0]
    classifier = load_classifier(model_dir, framework, args.precision, args.runtime)
    processor = load_processor(model_dir, warn=warn)
    labels = classifier.labels
    folder = scan_image_folder(args.data, classes=labels, allow_missing_classes=True)
    paths = [p for p, _ in folder.samples]
    truth = np.array(folder.targets)
    (logits,) = batched_logits([classifier], processor, paths, batch_size=args.batch_size)
    pred = logits.argmax(-1)
    n = len(labels)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (truth, pred), 1)
    present = [i for i in range(n) if confusion[i].sum() > 0]
    accuracy = float((pred == truth).mean())
    per_class = {labels[i]: {"images": int(confusion[i].sum()), "accuracy": float(confusion[i, i] / confusion[i].sum())}
                 for i in present}
    if args.confusion_png:
        _write_confusion_png(confusion[np.ix_(present, present)], [labels[i] for i in present], args.confusion_png,
                             f"{classifier.config.model_type}: {accuracy * 100:.1f}% on {len(paths)} images")
    mistakes = sorted(((int(confusion[t, p]), labels[t], labels[p]) for t in range(n) for p in range(n)
                       if t != p and confusion[t, p]), reverse=True)
    if args.json:
        doc = {"model": str(model_dir), "framework": framework, "precision": args.precision, "runtime": args.runtime,
               "data": str(args.data), "images": len(paths),
               "accuracy": accuracy, "per_class": per_class,
               "confusion": {"labels": [labels[i] for i in present],
                             "matrix": confusion[np.ix_(present, present)].tolist()},
               "top_confusions": [{"true": t, "predicted": p, "count": c} for c, t, p in mistakes[:20]]}
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    print(f"model: {model_dir} ({classifier.config.model_type})  framework: {framework}  "
          f"precision: {args.precision}  runtime: {args.runtime}  data: {args.data}", file=out)
    print(f"accuracy: {accuracy * 100:.2f}% ({int((pred == truth).sum())}/{len(paths)} images, "
          f"{len(present)} classes)", file=out)
    rows = [[labels[i], str(per_class[labels[i]]["images"]), f"{per_class[labels[i]]['accuracy'] * 100:.1f}%",
             ", ".join(f"{labels[p]}×{confusion[i, p]}" for p in np.argsort(-confusion[i], kind="stable")
                       if p != i and confusion[i, p])[:60] or "-"]
            for i in present]
    print_table(["class", "images", "accuracy", "mistaken for"], rows, out)
    if mistakes:
        top = "; ".join(f"{t} → {p}: {c}" for c, t, p in mistakes[:5])
        print(f"most frequent confusions: {top}", file=out)
    if len(present) <= 20:
        print("confusion matrix (rows: true class, columns: predicted):", file=out)
        header = ["true\\pred"] + [labels[i] for i in present]
        print_table(header, [[labels[i]] + [str(confusion[i, j]) for j in present] for i in present], out)
    return 0


def _write_confusion_png(matrix, labels: list[str], path: str, title: str) -> None:
    """The picture, or one line naming the extra to install (the numbers are still printed)."""
    from convnext_app.plots import PlotsUnavailable, write_confusion

    try:
        write_confusion(matrix, labels, path, title)
    except PlotsUnavailable as e:
        warn(f"--confusion-png {path} not written: {e}")
