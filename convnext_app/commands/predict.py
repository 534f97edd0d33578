"""``convnext predict``: classify images and print the top-k labels (a table or JSON)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional, Sequence, TextIO

from convnext_app.precision import add_precision_option
from convnext_app.runtimes import add_runtime_option

from .common import (
    add_bulk_options, add_framework_option, add_model_option, announce_licence, clip, model_source, positive_int,
    print_table, resolve_framework, run_bulk_command, warn,
)

HELP = "classify images (default: the bundled samples with the embedded model)"
DESCRIPTION = ("Classify images with a ConvNeXt (hub id or folder) and print the top-k labels. Preprocessing "
               "comes from its preprocessor_config.json; V1 or V2 is chosen by config.json's model_type.")
EPILOG = """examples:
  convnext predict                          the bundled digit samples, embedded model
  convnext predict cat.jpg --model facebook/convnext-tiny-224
  convnext predict cat.jpg --model timm/convnext_tiny.fb_in22k_ft_in1k --framework tf
  convnext predict cat.jpg photos/ --model ./convnext-tiny-224 --top-k 5
  convnext predict --framework both --json  both twins, with their largest difference
  convnext predict photos/ --model ./convnext-tiny-224 --output labels.jsonl --top-k 5
                                            a whole collection, streamed to a file (.jsonl, .csv, .parquet);
                                            rerun with --resume after a kill"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files or folders of images (default: the bundled samples)")
    add_model_option(p)
    add_precision_option(p)
    add_runtime_option(p)
    add_framework_option(p, ["pt", "tf", "both"])
    p.add_argument("--top-k", type=positive_int, default=3, metavar="K", help="labels shown per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass (default 32)")
    add_bulk_options(p, "write the results to FILE as they are produced, format by extension: .jsonl, .csv, "
                        ".parquet (needs pyarrow); without it the table (or --json) is printed at the end")


def _expand_images(items: Sequence[str]) -> list[Path]:
    from convnext_app.bulk.files import image_paths

    return [Path(p) for p in image_paths(items)]


def run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from .common import prepared_precision

    with prepared_precision(args, "classification"):
        return _run(args, out)


def _run(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from convnext_app.inference import (
        batched_logits, load_classifier, load_processor, sample_image_paths, softmax, top_k,
    )

    out = out or sys.stdout
    model_dir = model_source(args)
    announce_licence(model_dir)
    frameworks = resolve_framework(args.framework)
    paths = _expand_images(args.images) if args.images else sample_image_paths()
    if not paths:
        raise FileNotFoundError("no images given and no bundled samples found")
    if args.output:
        if len(frameworks) > 1:
            raise ValueError("--output runs one twin: --framework pt or tf, not both")
        return run_bulk_command(args, "predict", [str(p) for p in paths], top_k=args.top_k)
    if args.resume or args.strict:
        raise ValueError("--resume and --strict go with --output FILE")
    classifiers = [load_classifier(model_dir, fw, args.precision, args.runtime) for fw in frameworks]
    processor = load_processor(model_dir, warn=warn)
    labels = classifiers[0].labels
    logits = batched_logits(classifiers, processor, paths, batch_size=args.batch_size)
    probs = [softmax(lg) for lg in logits]
    tops = [top_k(p, args.top_k, labels) for p in probs]
    diff = None
    if len(frameworks) == 2:
        diff = {"max_abs_logit_diff": float(abs(logits[0] - logits[1]).max(initial=0.0)),
                "max_abs_prob_diff": float(abs(probs[0] - probs[1]).max(initial=0.0)),
                "top1_agree": int((logits[0].argmax(-1) == logits[1].argmax(-1)).sum()), "images": len(paths)}
    if args.json:
        doc = {"model": str(model_dir), "model_type": classifiers[0].config.model_type, "frameworks": frameworks,
               "precision": args.precision, "runtime": args.runtime,
               "results": [{"image": str(path),
                            "top_k": {fw: [{"label": lab, "probability": pr} for lab, pr in t[i]]
                                      for fw, t in zip(frameworks, tops)}}
                           for i, path in enumerate(paths)]}
        if diff is not None:
            doc["pt_vs_tf"] = diff
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    config = classifiers[0].config
    print(f"model: {model_dir} ({config.model_type}, {config.num_labels} labels)  "
          f"framework: {' and '.join(frameworks)}  precision: {args.precision}  runtime: {args.runtime}", file=out)
    names = [_short_name(p, paths) for p in paths]
    k = len(tops[0][0])
    header = ["image"] + [f"top-{j + 1}" for j in range(k)] + (["tf top-1"] if diff else [])
    rows = []
    for i, name in enumerate(names):
        row = [name] + [f"{clip(lab, 24)} {pr * 100:5.1f}%" for lab, pr in tops[0][i]]
        if diff:
            tf_lab, tf_pr = tops[1][i][0]
            row.append(f"{clip(tf_lab, 24)} {tf_pr * 100:5.1f}%")
        rows.append(row)
    print_table(header, rows, out)
    if diff:
        print(f"PT vs TF: max |logit difference| {diff['max_abs_logit_diff']:.2e}, max |probability difference| "
              f"{diff['max_abs_prob_diff']:.2e}, top-1 agrees on {diff['top1_agree']}/{diff['images']} images",
              file=out)
    return 0


def _short_name(path: Path, all_paths: Sequence[Path]) -> str:
    names = [p.name for p in all_paths]
    return path.name if names.count(path.name) == 1 else str(path)
