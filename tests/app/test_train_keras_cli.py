"""`convnext train --framework tf`: the Keras twin fine-tuned with fit on the folders of `convnext train`.

References: `convnext train`'s own pieces (crop box, schedule, weight-decay rule, metrics keys), the image
processor, torch's antialiased resize and clip_grad_norm_, the closed forms of mixup/cutmix (timm's Mixup),
of Keras' EMA recursion and of gradient accumulation (two half batches = one batch), and the PyTorch twin
reading the output.
"""

import argparse
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch  # before TensorFlow

from app.conftest import CLASSES, train_args, write_tiny_classifier
from conftest import REPO
from convnext_app import cli
from convnext_app.training.keras import KerasTrainingError, KerasTrainOptions, run_from_args
from convnext_app.training.common.augment import crop_box
from convnext_app.training.keras.data import Augment, mix_batch, one_hot
from convnext_app.training.pt import build_optimizer as pt_build_optimizer
from convnext_app.training.common.schedule import warmup_cosine
from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import ConvNextForImageClassification

@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """app/conftest.py's tiny classifier with layer scale 0.5, so that every block counts."""
    return write_tiny_classifier(tmp_path_factory.mktemp("tiny_model"), layer_scale_init_value=0.5)


def namespace(data, model, out, **recipe) -> argparse.Namespace:
    """Parsed `convnext train --framework tf` arguments plus recipe options the parser may not define yet."""
    from convnext_app.cli import build_parser

    args = build_parser("train").parse_args(train_args(data, model, out, "--framework", "tf"))
    for name, value in recipe.items():
        setattr(args, name, value)
    return args


# ---- framework-free pieces -----------------------------------------------------------------------
def test_crop_box_follows_torchvisions_rule_worked_by_hand():
    """The crop both training paths use (convnext_app.training.common.augment.crop_box), on draws worked
    out by hand: area 0.25 + 0.75 * 0.5 of 100 x 100 = 6250 at aspect exp(0) = 1 gives a 79 x 79 crop; left
    int(1.0 * 22) = 22 is clamped to 21. A 5 x 300 strip fits no try and falls back to the widest
    centred crop within 4/3: 5 x round(5 * 4 / 3) = 7, left (300 - 7) // 2."""
    assert crop_box(100, 100, lambda: (0.5, 0.5, 0.0, 1.0), min_scale=0.25) == (0, 21, 79, 79)
    assert crop_box(5, 300, lambda: (0.99, 0.5, 0.5, 0.5), min_scale=0.25) == (0, 146, 5, 7)


def test_augment_normalises_like_the_processor_and_resizes_like_torch():
    from PIL import Image

    processor = ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=1.0, image_mean=[0.2, 0.4, 0.6],
                                       image_std=[0.3, 0.2, 0.1])
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    # area 1 and a square image: the whole image, no resize -> exactly the processor's pixels
    ours = Augment(processor, 32, min_scale=1.0, flip=False)(image, np.random.default_rng(1))
    np.testing.assert_allclose(ours, processor(image, return_tensors="np")["pixel_values"][0], atol=1e-5)
    # a downscale: PIL's bilinear against torch's antialiased bilinear (convnext train's), within one grey level
    smooth = Image.fromarray(np.uint8(np.add.outer(np.arange(64), np.arange(64)) * 2 % 256)).convert("RGB")
    got = Augment(processor, 24, min_scale=1.0, flip=False)(smooth, np.random.default_rng(1))
    x = torch.from_numpy(np.asarray(smooth, np.float32)).permute(2, 0, 1)[None]
    ref = torch.nn.functional.interpolate(x, size=(24, 24), mode="bilinear", antialias=True)[0].round().numpy()
    ref = (ref / 255.0 - np.array([0.2, 0.4, 0.6])[:, None, None]) / np.array([0.3, 0.2, 0.1])[:, None, None]
    assert np.abs((got - ref) * np.array([0.3, 0.2, 0.1])[:, None, None]).max() <= 1.01 / 255


def test_mixup_blends_with_the_reversed_batch():
    pixels = np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 3, 8, 8), np.float32)
    targets = one_hot([0, 1, 2, 0], 3)
    mixed, soft, lam = mix_batch(pixels, targets, mixup=0.8, cutmix=0.0, rng=np.random.default_rng(3))
    assert 0 < lam < 1
    for i in range(4):  # sample i with sample 3 - i, weights lam and 1 - lam
        np.testing.assert_allclose(mixed[i], lam * i + (1 - lam) * (3 - i), rtol=1e-6)
    np.testing.assert_allclose(soft[0], [lam + (1 - lam), 0, 0], rtol=1e-6)  # labels 0 and 0
    np.testing.assert_allclose(soft[1], [0, lam, 1 - lam], rtol=1e-6)        # labels 1 and 2
    np.testing.assert_allclose(soft.sum(1), 1.0, rtol=1e-6)


def test_cutmix_pastes_a_box_and_lambda_is_the_area_left():
    pixels = np.arange(4, dtype=np.float32)[:, None, None, None] * np.ones((4, 3, 20, 30), np.float32)
    targets = one_hot([0, 1, 2, 2], 3)
    for seed in range(20):
        mixed, soft, lam = mix_batch(pixels, targets, mixup=0.0, cutmix=1.0, rng=np.random.default_rng(seed))
        pasted = mixed[0, 0] == 3  # sample 0 received sample 3's pixels in a rectangle
        rows, cols = np.flatnonzero(pasted.any(1)), np.flatnonzero(pasted.any(0))
        if pasted.any():
            assert pasted[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1].all()
        assert lam == pytest.approx(1 - pasted.mean())
        np.testing.assert_allclose(soft[0], [lam, 0, 1 - lam], rtol=1e-6)
        np.testing.assert_array_equal(mixed[0, 0][~pasted], 0)


def test_both_mixes_switch_half_the_time():
    pixels, targets = np.zeros((2, 3, 16, 16), np.float32), one_hot([0, 1], 2)
    pixels[1] = 1
    cut = 0
    for seed in range(400):
        mixed, _, lam = mix_batch(pixels, targets, mixup=0.8, cutmix=1.0, rng=np.random.default_rng(seed))
        cut += int(np.isin(mixed[0], (0.0, 1.0)).all() and 0 < lam < 1)  # cutmix leaves pure pixels
    assert 160 <= cut <= 240  # Binomial(400, 1/2): 8 sigma around 200


@pytest.mark.parametrize("flag,name,value", [
    ("--randaugment", "randaugment", "rand-m9-mstd0.5"), ("--reprob", "reprob", 0.25),
    ("--layer-decay", "layer_decay", 0.8), ("--resume", "resume", True), ("--amp", "amp", True),
    ("--workers", "workers", 2), ("--stop-after", "stop_after", 1)])
def test_options_keras_does_not_run_are_refused_in_one_line(digit_folder, tiny_model, tmp_path, flag, name, value):
    with pytest.raises(KerasTrainingError) as caught:
        run_from_args(namespace(digit_folder, tiny_model, tmp_path / "out", **{name: value}))
    message = str(caught.value)
    assert message.startswith(f"{flag} is not supported with --framework tf") and "\n" not in message
    assert not (tmp_path / "out").exists()


def test_refusals_through_the_command_line(digit_folder, tiny_model, tmp_path, capsys):
    for extra in (["--resume"], ["--amp"], ["--workers", "2"]):
        assert cli.main(train_args(digit_folder, tiny_model, tmp_path / "out", "--framework", "tf", *extra)) == 1
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith(f"convnext train: error: {extra[0]} is not supported with --framework tf")
    # neutral values of the recipe options are no options at all
    args = namespace(digit_folder, tiny_model, tmp_path / "out", layer_decay=1.0, accum_steps=1, reprob=0.0,
                     head_init_scale=1.0, ema=None, mixup=0.0)
    options = KerasTrainOptions.from_namespace(args)
    assert options.accum_steps == 1 and options.ema is None and options.mixup == 0.0
    with pytest.raises(KerasTrainingError, match="^--ema with --accum-steps is not supported"):
        KerasTrainOptions.from_namespace(namespace(digit_folder, tiny_model, tmp_path, ema=0.9, accum_steps=2)).validate()


@pytest.mark.tf
def test_the_keras_path_imports_no_torch():
    code = ("import sys; import convnext_app.training.keras.run; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]


# ---- Keras: optimizer pieces -----------------------------------------------------------------------
@pytest.mark.tf
def test_schedule_is_warmup_cosine_per_update():
    from convnext_app.training.keras.optim import WarmupCosine, plan_updates

    plan = plan_updates(steps_per_epoch=10, epochs=10, warmup_epochs=1.0)
    assert (plan.total_updates, plan.warmup_updates) == (100, 10)
    schedule = WarmupCosine(1.0, plan.total_updates, plan.warmup_updates, min_lr=0.1)
    lrs = [float(schedule(s)) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)             # linear warmup
    assert lrs[10] == pytest.approx(1.0)                                               # the cosine starts at the peak
    assert lrs[55] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))   # half way: the midpoint
    assert lrs[100] == pytest.approx(0.1)
    for s in range(101):  # the values of convnext train's schedule
        assert lrs[s] == pytest.approx(warmup_cosine(s, 100, 10, 1.0, 0.1), abs=1e-6)  # float32 of a peak of 1
    # accumulation: Keras counts batches; the rate is that of the update they belong to
    plan = plan_updates(steps_per_epoch=10, epochs=10, warmup_epochs=1.0, accum_steps=4)
    assert (plan.total_updates, plan.warmup_updates) == (25, 2)
    schedule = WarmupCosine(2e-3, plan.total_updates, plan.warmup_updates, plan.accum_steps)
    for batch in range(100):
        assert float(schedule(batch)) == pytest.approx(warmup_cosine(batch // 4, 25, 2, 2e-3), abs=2e-9)


@pytest.mark.tf
def test_weight_decay_spares_what_convnext_train_spares():
    from convnext_app.training.keras.optim import WarmupCosine, build_optimizer
    from convnext_tf import TFConvNextV2ForImageClassification
    from convnext_tf.hub import tf_name_to_canonical
    from convnext_pt import ConvNextV2ForImageClassification

    from convnext_common import ConvNextV2Config

    config = ConvNextV2Config(depths=[1, 1], hidden_sizes=[8, 16], num_stages=2, num_labels=3)
    pt = ConvNextV2ForImageClassification(config)
    names = {id(p): n for n, p in pt.named_parameters()}
    pt_spared = {names[id(p)] for p in pt_build_optimizer(pt, 1e-3, 0.05).param_groups[1]["params"]}
    model = TFConvNextV2ForImageClassification(config)
    optimizer = build_optimizer(model, WarmupCosine(1e-3, 10, 1), 0.05)
    by_path = {v.path: v for v in model.trainable_variables}
    spared = {tf_name_to_canonical(p)[0] for p, v in model._variables_by_tf_path().items()
              if not optimizer._use_weight_decay(v)}
    assert spared == pt_spared and any(".grn." in n for n in spared) and len(by_path) > len(spared)
    assert optimizer.epsilon == 1e-8 and optimizer.global_clipnorm is None and not optimizer.use_ema


@pytest.mark.tf
def test_clip_grad_is_torchs_global_norm():
    import keras

    from convnext_app.training.keras.optim import WarmupCosine, build_optimizer

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    optimizer = build_optimizer(model, WarmupCosine(1e-3, 10, 1), 0.05, clip_grad=0.5)
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(tuple(v.shape)).astype(np.float32) for v in model.trainable_variables]
    clipped = [np.asarray(g) for g in optimizer._clip_gradients([keras.ops.convert_to_tensor(g) for g in grads])]
    params = [torch.zeros(g.shape, requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = torch.from_numpy(g.copy())
    torch.nn.utils.clip_grad_norm_(params, 0.5)
    for ours, p in zip(clipped, params):
        np.testing.assert_allclose(ours, p.grad.numpy(), rtol=1e-5, atol=1e-7)
    assert optimizer.clipnorm is None  # not Keras' per-variable norm


@pytest.mark.tf
def test_head_init_scale_multiplies_the_new_head():
    from convnext_app.training.keras.model import prepare_keras_model, scale_head

    plain = prepare_keras_model("convnext-atto", CLASSES, 32, None, seed=5).model
    scaled = prepare_keras_model("convnext-atto", CLASSES, 32, None, seed=5).model
    scale_head(scaled, 0.001)
    kernel = plain.classifier.kernel.numpy()
    assert np.abs(kernel).max() > 0
    np.testing.assert_allclose(scaled.classifier.kernel.numpy(), kernel * np.float32(0.001), rtol=1e-6)


# ---- Keras: runs ------------------------------------------------------------------------------------
def _predicted_labels(model_dir, images, framework, capsys) -> list[str]:
    assert cli.main(["predict", str(images), "--model", str(model_dir), "--framework", framework, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    return [r["top_k"][framework][0]["label"] for r in doc["results"]]


@pytest.mark.tf
@pytest.mark.slow
def test_fine_tune_from_the_command_line_reads_in_both_twins(digit_folder, tiny_model, tmp_path, capsys):
    from convnext_tf import TFConvNextForImageClassification

    out = tmp_path / "keras"
    assert cli.main(train_args(digit_folder, tiny_model, out, "--framework", "tf", "--epochs", "3", "--lr", "2e-3")) == 0
    for name in ("config.json", "tf_model.h5", "model.safetensors", "preprocessor_config.json", "metrics.json"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "one", "1": "seven", "2": "zero"}
    metrics = json.loads((out / "metrics.json").read_text())
    epochs = metrics["epochs"]
    assert [e["epoch"] for e in epochs] == [1, 2, 3] and metrics["images"] == {"train": 24, "val": 6}
    assert epochs[-1]["train_loss"] < epochs[0]["train_loss"]                 # it learns
    assert epochs[-1]["val_accuracy"] > 1 / 3                                 # above chance on held-out images
    # the same keys as convnext train's (PyTorch) metrics.json, per run and per epoch
    pt_out = tmp_path / "torch"
    assert cli.main(train_args(digit_folder, tiny_model, pt_out, "--epochs", "1")) == 0
    pt_metrics = json.loads((pt_out / "metrics.json").read_text())
    assert set(metrics) == set(pt_metrics) and set(epochs[0]) == set(pt_metrics["epochs"][0])
    # the same folder (curves.png included, where matplotlib is installed) plus tf_model.h5, less PyTorch's resume file
    pt_files = {p.name for p in pt_out.iterdir()} - {"last_checkpoint.pt"}
    assert {p.name for p in out.iterdir()} == pt_files | {"tf_model.h5"}
    # the output is one model to both twins: same logits, and convnext predict gives the same labels
    pt = ConvNextForImageClassification.from_pretrained(out)
    tf_model = TFConvNextForImageClassification.from_pretrained(out)
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        ref = pt(torch.from_numpy(x)).logits.numpy()
    assert np.abs(np.asarray(tf_model(x, training=False).logits) - ref).max() / max(1.0, np.abs(ref).max()) <= 1e-4
    start = ConvNextForImageClassification.from_pretrained(tiny_model)
    assert not torch.equal(pt.convnext.embeddings.patch_embeddings.weight, start.convnext.embeddings.patch_embeddings.weight)
    labels = _predicted_labels(out, digit_folder, "pt", capsys)
    assert labels == _predicted_labels(out, digit_folder, "tf", capsys) and len(labels) == 30
    # a second run into the same folder must be explicit
    assert cli.main(train_args(digit_folder, tiny_model, out, "--framework", "tf", "--epochs", "1")) == 1
    assert "--overwrite" in capsys.readouterr().err


class _RecordBias:
    """Keras callback: the classifier bias after every batch (the raw weights, before any averaging)."""

    def __new__(cls):
        import keras

        class Record(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.values = []

            def on_train_batch_end(self, batch, logs=None):
                self.values.append(np.array(self.model.classifier.bias.numpy()))

        return Record()


@pytest.mark.tf
@pytest.mark.slow
def test_ema_under_mirrored_strategy_saves_the_average(digit_folder, tiny_model, tmp_path):
    import tensorflow as tf

    from convnext_app.training.keras.run import train_keras
    from convnext_tf import TFConvNextForImageClassification

    out, decay = tmp_path / "ema", 0.6
    options = KerasTrainOptions.from_namespace(namespace(digit_folder, tiny_model, out, ema=decay, mixup=0.8,
                                                         cutmix=1.0, clip_grad=1.0))
    options.epochs, options.lr = 2, 3e-3
    record = _RecordBias()
    metrics = train_keras(options, strategy=tf.distribute.MirroredStrategy(["/cpu:0"]), callbacks=[record])
    assert len(record.values) == 6 and metrics["world_size"] == 1
    average = record.values[0]  # Keras' moving average: the first update's weights, then decay per update
    for value in record.values[1:]:
        average = decay * average + (1 - decay) * value
    saved = TFConvNextForImageClassification.from_pretrained(out).classifier.bias.numpy()
    np.testing.assert_allclose(saved, average, rtol=1e-5, atol=1e-7)
    assert not np.allclose(saved, record.values[-1])  # the output is the average, not the last raw weights


@pytest.mark.tf
@pytest.mark.slow
def test_two_accumulated_half_batches_are_one_batch(digit_folder, tiny_model, tmp_path):
    from convnext_app.training.keras.run import train_keras
    from convnext_tf import TFConvNextForImageClassification

    def run(out, batch_size, accum_steps):
        options = KerasTrainOptions.from_namespace(namespace(digit_folder, tiny_model, out, accum_steps=accum_steps))
        options.epochs, options.lr, options.batch_size = 2, 3e-3, batch_size
        train_keras(options)
        return TFConvNextForImageClassification.from_pretrained(out).numpy_state_dict()

    whole, halves = run(tmp_path / "whole", 8, 1), run(tmp_path / "halves", 4, 2)
    start = ConvNextForImageClassification.from_pretrained(tiny_model).state_dict()
    assert not np.allclose(whole["convnext.embeddings.patch_embeddings.weight"],
                           start["convnext.embeddings.patch_embeddings.weight"].numpy())
    for name, value in whole.items():
        np.testing.assert_allclose(halves[name], value, rtol=1e-4, atol=2e-6, err_msg=name)


@pytest.mark.tf
@pytest.mark.slow
def test_freeze_trunk_trains_the_head_only(digit_folder, tiny_model, tmp_path):
    from convnext_app.training.keras.run import train_keras
    from convnext_tf import TFConvNextForImageClassification

    options = KerasTrainOptions.from_namespace(namespace(digit_folder, tiny_model, tmp_path / "probe",
                                                         freeze_trunk=True, head_init_scale=0.5))
    options.epochs, options.lr, options.drop_path = 1, 1e-2, 0.3
    train_keras(options)
    trained = TFConvNextForImageClassification.from_pretrained(tmp_path / "probe").numpy_state_dict()
    start = ConvNextForImageClassification.from_pretrained(tiny_model).state_dict()
    trunk = [n for n in trained if not n.startswith("classifier.")]
    assert len(trunk) > 10
    for name in trunk:
        np.testing.assert_array_equal(trained[name], start[name].numpy(), err_msg=name)
    assert trained["classifier.weight"].shape == (3, 64) and np.abs(trained["classifier.bias"]).max() > 0
