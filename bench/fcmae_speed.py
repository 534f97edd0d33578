"""FCMAE pre-training speed: a training step of ConvNextV2ForMaskedImageModeling against a plain training
step (cross-entropy) of ConvNextV2ForImageClassification of the same size, in the PyTorch twin and the
Keras twin (TensorFlow backend), interleaved rounds (bench/timing.py), img/s.

    python bench/fcmae_speed.py --variant convnextv2-atto --size 224 --batch 8 --rounds 5

The masked model runs the whole dense trunk (removed sites are computed, then zeroed) plus its
decoder and loss: its cost over the plain step is the decoder, the masks and the loss.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402  (before TensorFlow)

from bench.hardware import describe, one_line  # noqa: E402
from bench.timing import interleaved  # noqa: E402
from convnext_common.config import ConvNextV2Config  # noqa: E402


def torch_steps(config, x, y, mask):
    from convnext_pt import ConvNextV2ForImageClassification, ConvNextV2ForMaskedImageModeling

    torch.manual_seed(0)
    mim = ConvNextV2ForMaskedImageModeling(config).train()
    clf = ConvNextV2ForImageClassification(config).train()
    opt_mim = torch.optim.AdamW([p for p in mim.parameters() if p.requires_grad], lr=1e-4)
    opt_clf = torch.optim.AdamW(clf.parameters(), lr=1e-4)
    xt, yt, mt = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(mask)

    def mim_step():
        opt_mim.zero_grad()
        mim(xt, bool_masked_pos=mt).loss.backward()
        opt_mim.step()

    def clf_step():
        opt_clf.zero_grad()
        torch.nn.functional.cross_entropy(clf(xt).logits, yt).backward()
        opt_clf.step()

    return mim_step, clf_step


def keras_steps(config, x, y):
    import keras

    import convnext_tf

    mim = convnext_tf.TFConvNextV2ForMaskedImageModeling(config)
    mim.compile(optimizer=keras.optimizers.AdamW(1e-4))
    clf = convnext_tf.TFConvNextV2ForImageClassification(config)
    clf.compile(optimizer=keras.optimizers.AdamW(1e-4))
    return (lambda: mim.train_on_batch(x)), (lambda: clf.train_on_batch(x, y))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--variant", default="convnextv2-atto")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-keras", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    config = ConvNextV2Config.from_variant(args.variant, num_labels=10, image_size=args.size)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, 3, args.size, args.size)).astype(np.float32)
    y = rng.integers(0, 10, args.batch)
    patches = (args.size // 32) ** 2
    mask = np.stack([rng.permutation(patches) >= int(patches * 0.4) for _ in range(args.batch)])
    contenders = dict(zip(("pt masked-image step", "pt classification step"), torch_steps(config, x, y, mask)))
    if not args.no_keras:
        contenders.update(zip(("keras masked-image step (fit's train_on_batch)", "keras classification step"),
                              keras_steps(config, x, y)))
    print(one_line(describe()), file=sys.stderr)
    stats = interleaved(contenders, args.rounds)
    rows = {name: ({"img_per_s": args.batch / s["median_s"],
                    "range_img_per_s": [args.batch / s["range_s"][1], args.batch / s["range_s"][0]]}
                   if "median_s" in s else s) for name, s in stats.items()}
    print(json.dumps({"host": describe(), "variant": args.variant, "size": args.size, "batch": args.batch,
                      "threads": args.threads, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
