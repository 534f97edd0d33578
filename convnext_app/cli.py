"""The ``convnext`` command (also ``python -m convnext_app``).

Each subcommand is one :func:`register` call naming two functions, ``add_arguments(parser)`` and
``run(args) -> exit code``, either as callables or as ``"module:function"`` strings that are
imported only when that subcommand runs. So ``convnext --help`` and importing this module load
neither torch nor tensorflow, and a subcommand whose module is absent reports that in one line.

Errors: one line on stderr (``convnext <command>: error: ...``) and a non-zero exit; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, TextIO, Union

PROG = "convnext"

Hook = Union[str, Callable]


@dataclass(frozen=True)
class Subcommand:
    name: str
    help: str
    add_arguments: Hook
    run: Hook
    description: Optional[str] = None
    epilog: Optional[str] = None


COMMANDS: dict[str, Subcommand] = {}


def register(name: str, help: str, add_arguments: Hook, run: Hook, description: Optional[str] = None,
             epilog: Optional[str] = None) -> None:
    """Add a subcommand. ``add_arguments``/``run`` may be ``"package.module:function"`` (imported lazily)."""
    COMMANDS[name] = Subcommand(name, help, add_arguments, run, description, epilog)


class CommandUnavailable(ImportError):
    """The module that implements a subcommand is not installed or not part of this build."""


def _resolve(hook: Hook, command: str) -> Callable:
    if callable(hook):
        return hook
    module_name, _, attr = hook.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise CommandUnavailable(f"'{command}' is not available: module {module_name} is missing") from None
        raise CommandUnavailable(f"'{command}' needs the package {e.name!r}, which is not installed") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise CommandUnavailable(f"'{command}' is not available: {module_name} has no {attr}()") from None


def one_line(error: BaseException) -> str:
    """An exception as a single line: the message for the usual errors, 'Type: message' otherwise."""
    text = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, (ValueError, OSError, ImportError, KeyError)) and str(error):
        return text.strip("'\"") if isinstance(error, KeyError) else text
    return f"{type(error).__name__}: {text}"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _selected_command(argv: Sequence[str]) -> Optional[str]:
    for token in argv:
        if token in COMMANDS:
            return token
        if not token.startswith("-"):
            return None
    return None


def build_parser(selected: Optional[str] = None) -> argparse.ArgumentParser:
    """The full parser; only ``selected``'s arguments are added (importing its module if lazy)."""
    parser = _Parser(prog=PROG, description="ConvNeXt for PyTorch and Keras: predict, evaluate, fine-tune and "
                     "convert checkpoints. With no --model, commands use the embedded digits model.",
                     epilog=f"Run '{PROG} COMMAND --help' for the options of a command. "
                            f"First try: '{PROG} predict'.")
    from convnext_common import __version__

    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.description or cmd.help, epilog=cmd.epilog,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        if cmd.name == selected:
            _resolve(cmd.add_arguments, cmd.name)(p)
            if "--debug" not in p._option_string_actions:
                p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                               help="show the full traceback of an error")
            p.set_defaults(_run=cmd.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = _selected_command(argv)
    debug = "--debug" in argv
    label = f"{PROG} {command}" if command else PROG
    try:
        parser = build_parser(command)
        args = parser.parse_args(argv)
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        return int(_resolve(args._run, command)(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"{label}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001  every error becomes one line unless --debug
        if debug:
            raise
        print(f"{label}: error: {one_line(e)}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------------------------------
# shared options
# --------------------------------------------------------------------------------------------------
MODEL_HELP = ("a hub id (facebook/convnext-tiny-224, timm/convnext_tiny.fb_in1k, ID@REVISION; from the local "
              "cache when HF_HUB_OFFLINE=1) or a hub-layout ConvNeXt folder (config.json, model.safetensors or "
              "tf_model.h5, preprocessor_config.json)")


def _add_model_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="ID|DIR", default=None,
                   help=MODEL_HELP + "; default: the embedded digits model")


def _add_framework_option(p: argparse.ArgumentParser, choices: Sequence[str]) -> None:
    p.add_argument("--framework", choices=list(choices) + ["auto"], default="auto",
                   help="pt (PyTorch) or tf (Keras/TensorFlow)" + (", both compares them" if "both" in choices else "")
                        + "; auto (default): pt when PyTorch is installed, else tf")


def _resolve_framework(name: str) -> list[str]:
    if name == "both":
        return ["pt", "tf"]  # torch first: it must be imported before tensorflow in one process
    if name != "auto":
        return [name]
    import importlib.util

    return ["pt"] if importlib.util.find_spec("torch") is not None else ["tf"]


def _model_dir(args: argparse.Namespace) -> Union[str, Path]:
    """``--model`` as given (a folder or a hub id), or the embedded model's folder."""
    from .inference import default_model_dir

    return args.model if args.model else default_model_dir()


def _warn(message: str) -> None:
    print(f"{PROG}: note: {message}", file=sys.stderr)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


# --------------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------------
PREDICT_EPILOG = """examples:
  convnext predict                          the bundled digit samples, embedded model
  convnext predict cat.jpg --model facebook/convnext-tiny-224
  convnext predict cat.jpg --model timm/convnext_tiny.fb_in22k_ft_in1k --framework tf
  convnext predict cat.jpg photos/ --model ./convnext-tiny-224 --top-k 5
  convnext predict --framework both --json  both twins, with their largest difference"""


def add_predict_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="*", metavar="IMAGE",
                   help="image files or folders of images (default: the bundled samples)")
    _add_model_option(p)
    _add_framework_option(p, ["pt", "tf", "both"])
    p.add_argument("--top-k", type=_positive_int, default=3, metavar="K", help="labels shown per image (default 3)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per forward pass (default 32)")


def _expand_images(items: Sequence[str]) -> list[Path]:
    from .imagefolder import is_image_file

    paths: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f))
            if not found:
                raise FileNotFoundError(f"{p}: folder holds no image files")
            paths += found
        elif p.is_file():
            paths.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such image file or folder")
    return paths


def run_predict(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    from .inference import batched_logits, load_classifier, load_processor, sample_image_paths, softmax, top_k

    out = out or sys.stdout
    model_dir = _model_dir(args)
    frameworks = _resolve_framework(args.framework)
    paths = _expand_images(args.images) if args.images else sample_image_paths()
    if not paths:
        raise FileNotFoundError("no images given and no bundled samples found")
    classifiers = [load_classifier(model_dir, fw) for fw in frameworks]
    processor = load_processor(model_dir, warn=_warn)
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
          f"framework: {' and '.join(frameworks)}", file=out)
    names = [_short_name(p, paths) for p in paths]
    k = len(tops[0][0])
    header = ["image"] + [f"top-{j + 1}" for j in range(k)] + (["tf top-1"] if diff else [])
    rows = []
    for i, name in enumerate(names):
        row = [name] + [f"{_clip(lab, 24)} {pr * 100:5.1f}%" for lab, pr in tops[0][i]]
        if diff:
            tf_lab, tf_pr = tops[1][i][0]
            row.append(f"{_clip(tf_lab, 24)} {tf_pr * 100:5.1f}%")
        rows.append(row)
    _print_table(header, rows, out)
    if diff:
        print(f"PT vs TF: max |logit difference| {diff['max_abs_logit_diff']:.2e}, max |probability difference| "
              f"{diff['max_abs_prob_diff']:.2e}, top-1 agrees on {diff['top1_agree']}/{diff['images']} images",
              file=out)
    return 0


def _short_name(path: Path, all_paths: Sequence[Path]) -> str:
    names = [p.name for p in all_paths]
    return path.name if names.count(path.name) == 1 else str(path)


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _print_table(header: Sequence[str], rows: Sequence[Sequence[str]], out: TextIO) -> None:
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(r, widths)).rstrip(), file=out)


# --------------------------------------------------------------------------------------------------
# evaluate
# --------------------------------------------------------------------------------------------------
def add_evaluate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR",
                   help="an ImageFolder: one sub-folder per class, named with the model's label names")
    _add_model_option(p)
    _add_framework_option(p, ["pt", "tf"])
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON (accuracy, per-class, confusion matrix)")


def run_evaluate(args: argparse.Namespace, out: Optional[TextIO] = None) -> int:
    import numpy as np

    from .imagefolder import scan_image_folder
    from .inference import batched_logits, load_classifier, load_processor

    out = out or sys.stdout
    model_dir = _model_dir(args)
    framework = _resolve_framework(args.framework)[0]
    classifier = load_classifier(model_dir, framework)
    processor = load_processor(model_dir, warn=_warn)
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
    mistakes = sorted(((int(confusion[t, p]), labels[t], labels[p]) for t in range(n) for p in range(n)
                       if t != p and confusion[t, p]), reverse=True)
    if args.json:
        doc = {"model": str(model_dir), "framework": framework, "data": str(args.data), "images": len(paths),
               "accuracy": accuracy, "per_class": per_class,
               "confusion": {"labels": [labels[i] for i in present],
                             "matrix": confusion[np.ix_(present, present)].tolist()},
               "top_confusions": [{"true": t, "predicted": p, "count": c} for c, t, p in mistakes[:20]]}
        json.dump(doc, out, indent=2)
        out.write("\n")
        return 0
    print(f"model: {model_dir} ({classifier.config.model_type})  framework: {framework}  data: {args.data}", file=out)
    print(f"accuracy: {accuracy * 100:.2f}% ({int((pred == truth).sum())}/{len(paths)} images, "
          f"{len(present)} classes)", file=out)
    rows = [[labels[i], str(per_class[labels[i]]["images"]), f"{per_class[labels[i]]['accuracy'] * 100:.1f}%",
             ", ".join(f"{labels[p]}×{confusion[i, p]}" for p in np.argsort(-confusion[i], kind="stable")
                       if p != i and confusion[i, p])[:60] or "-"]
            for i in present]
    _print_table(["class", "images", "accuracy", "mistaken for"], rows, out)
    if mistakes:
        top = "; ".join(f"{t} → {p}: {c}" for c, t, p in mistakes[:5])
        print(f"most frequent confusions: {top}", file=out)
    if len(present) <= 20:
        print("confusion matrix (rows: true class, columns: predicted):", file=out)
        header = ["true\\pred"] + [labels[i] for i in present]
        _print_table(header, [[labels[i]] + [str(confusion[i, j]) for j in present] for i in present], out)
    return 0


# --------------------------------------------------------------------------------------------------
# train (the work is in convnext_app.training, imported only when the command runs)
# --------------------------------------------------------------------------------------------------
TRAIN_EPILOG = """examples:
  convnext train --data ./flowers --model convnext-atto --out ./atto-flowers --epochs 30 --image-size 128
  convnext train --data ./flowers --model facebook/convnext-tiny-224 --out ./tiny-flowers --lr 1e-4
  convnext train --data ./flowers --model ./convnext-tiny-224 --out ./tiny-flowers --lr 1e-4
  torchrun --nproc_per_node=4 -m convnext_common train --data ./flowers --model convnext-tiny --out ./run
  convnext train ... --resume            continue from OUT/last_checkpoint.pt

DATA is an ImageFolder: one sub-folder per class (the folder names become the labels), either
directly or under train/ and val/. Without val/, --val-fraction of each class is held out."""


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="ImageFolder with class sub-folders (or train/, val/)")
    p.add_argument("--model", required=True, metavar="ID|DIR|VARIANT",
                   help="a hub id or hub-layout folder to fine-tune (transformers or timm), or a variant name "
                        "(e.g. convnext-atto, convnextv2-tiny) to train from a random init")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder (hub layout + metrics.json)")
    p.add_argument("--epochs", type=_positive_int, default=10, help="default 10")
    p.add_argument("--batch-size", type=_positive_int, default=32, help="images per step per process (default 32)")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of AdamW (default 5e-4)")
    p.add_argument("--weight-decay", type=float, default=0.05, help="AdamW weight decay (default 0.05)")
    p.add_argument("--warmup-epochs", type=float, default=1.0,
                   help="linear warmup length before the cosine decay (default 1; at most half the run)")
    p.add_argument("--label-smoothing", type=float, default=0.1, help="default 0.1")
    p.add_argument("--drop-path", type=float, default=None, metavar="RATE",
                   help="stochastic depth rate (default: the model's config, 0.1 for a new variant)")
    p.add_argument("--image-size", type=_positive_int, default=None,
                   help="training/eval resolution (default: the model's preprocessor, 224 for a variant)")
    p.add_argument("--min-scale", type=float, default=0.25,
                   help="smallest area fraction of the random resized crop (default 0.25)")
    p.add_argument("--no-flip", action="store_true", help="no random horizontal flips (e.g. for text or digits)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="held-out fraction of each class when DATA has no val/ folder (default 0.1)")
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and augmentation (default 0)")
    p.add_argument("--workers", type=int, default=0, help="data-loading processes per training process (default 0)")
    p.add_argument("--device", default="auto", help="auto (default: cuda when available), cpu, cuda, cuda:1, ...")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast on CUDA")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last_checkpoint.pt")
    p.add_argument("--stop-after", type=_positive_int, default=None, metavar="N",
                   help="stop after N epochs of this invocation (e.g. to fit a job time limit); "
                        "the schedule still spans --epochs, continue later with --resume")
    p.add_argument("--overwrite", action="store_true", help="start over even if OUT holds a previous run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run_train(args: argparse.Namespace) -> int:
    from convnext_app.training import StoppedByAnotherRank, TrainOptions, train

    try:
        train(TrainOptions.from_namespace(args))
    except StoppedByAnotherRank:
        if getattr(args, "debug", False):
            raise
        return 1  # under torchrun, rank 0 prints the error once, naming the rank that failed
    return 0


register("predict", "classify images (default: the bundled samples with the embedded model)",
         add_predict_arguments, run_predict, epilog=PREDICT_EPILOG,
         description="Classify images with a ConvNeXt (hub id or folder) and print the top-k labels. Preprocessing "
                     "comes from its preprocessor_config.json; V1 or V2 is chosen by config.json's model_type.")
register("evaluate", "accuracy and confusion summary on an ImageFolder", add_evaluate_arguments, run_evaluate,
         description="Accuracy, per-class accuracy and the most frequent confusions of a classifier on a folder "
                     "with one sub-folder per class (named with the model's label names).")
register("train", "train or fine-tune in PyTorch (single process or torchrun)", add_train_arguments, run_train,
         epilog=TRAIN_EPILOG,
         description="Train a ConvNeXt on an ImageFolder: a named variant from scratch or a folder fine-tuned (a new "
                     "head when the classes differ). AdamW, warmup + cosine, label smoothing, random resized crop + "
                     "flip. Under torchrun it trains data-parallel (DDP); only rank 0 writes.")
register("convert", "convert a checkpoint (transformers, timm, official, torchvision, keras) to a hub folder",
         "convnext_app.convert:add_convert_arguments", "convnext_app.convert:run_convert",
         description="Convert a ConvNeXt checkpoint into a hub-layout folder (config.json, model.safetensors, "
                     "tf_model.h5) that both twins and transformers load. INPUT may be a hub id (a transformers or timm repo). "
                     "Example: convnext convert timm/convnext_tiny.fb_in1k OUT")

register("export", "export to ONNX, TensorFlow SavedModel or TFLite, verified against the source model",
         "convnext_app.export_cli:add_export_arguments", "convnext_app.export_cli:run_export",
         description="Export a ConvNeXt (folder or hub id) for deployment and check the result against the model it "
                     "came from.")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
