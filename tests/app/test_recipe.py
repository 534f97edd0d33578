"""The fine-tuning recipe, piece by piece, against independent references: the official ConvNeXt
layer-id function written out here, closed forms (EMA, clipping), hand-computed targets, pixel
counts (cutmix), statistics (random erasing, RandAugment's magnitude noise) and a big-batch step
(gradient accumulation)."""

import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from convnext_common import ConvNextConfig, ConvNextV2Config
from convnext_pt import ConvNextForImageClassification, ConvNextV2ForImageClassification
from convnext_app.training.pt import build_optimizer
from convnext_app.training.pt.loop import StepRecipe, train_one_epoch
from convnext_app.training.pt.model import freeze_trunk
from convnext_app.training.pt.options import TrainingError, TrainOptions
from convnext_app.training.pt.recipe import (
    Mixup, ModelEma, RandomErasing, cutmix_box, layer_decay_groups, layer_id, mixup_targets, parse_randaugment,
    soft_target_cross_entropy,
)
from convnext_app.training.pt.recipe.randaugment import INCREASING_OPS, RandAugment, _apply, _level_args
from convnext_app.training.pt.schedule import no_weight_decay


# ---- layer decay: the official assignment -------------------------------------------------------
def official_get_num_layer_for_convnext(var_name):
    """facebookresearch/ConvNeXt optim_factory.get_num_layer_for_convnext, on the official names."""
    num_max_layer = 12
    if var_name.startswith("downsample_layers"):
        stage_id = int(var_name.split(".")[1])
        if stage_id == 0:
            return 0
        if stage_id in (1, 2):
            return stage_id + 1
        return 12
    if var_name.startswith("stages"):
        stage_id, block_id = int(var_name.split(".")[1]), int(var_name.split(".")[2])
        if stage_id in (0, 1):
            return stage_id + 1
        if stage_id == 2:
            return 3 + block_id // 3
        return 12
    return num_max_layer + 1


def official_single(var_name, depths):
    """ConvNeXt-V2 utils.get_num_layer_for_convnext_single."""
    if var_name.startswith("downsample_layers"):
        return sum(depths[:int(var_name.split(".")[1])]) + 1
    if var_name.startswith("stages"):
        stage_id, block_id = int(var_name.split(".")[1]), int(var_name.split(".")[2])
        return sum(depths[:stage_id]) + block_id + 1
    return sum(depths) + 1


def official_name(name):
    """The official repository's name of one of our parameters (the converter's table, by hand)."""
    parts = name.split(".")
    if parts[1] == "embeddings":
        return "downsample_layers.0." + ".".join(parts[2:])
    if parts[1] == "encoder":
        stage = parts[3]
        if parts[4] == "downsampling_layer":
            return f"downsample_layers.{stage}." + ".".join(parts[5:])
        return f"stages.{stage}.{parts[5]}." + ".".join(parts[6:])
    return "head." + name  # the pooled norm ("norm") and the classifier ("head") alike


TINY_DEPTHS = [3, 3, 9, 3]


def tiny_shaped(depths=TINY_DEPTHS, v2=False):
    if v2:
        return ConvNextV2ForImageClassification(ConvNextV2Config(depths=depths, hidden_sizes=[4, 8, 8, 8],
                                                                 num_labels=3))
    return ConvNextForImageClassification(ConvNextConfig(depths=depths, hidden_sizes=[4, 8, 8, 8], num_labels=3))


@pytest.mark.parametrize("v2", [False, True])
def test_layer_ids_are_the_official_ones_for_convnext_tiny(v2):
    model = tiny_shaped(v2=v2)
    names = [n for n, _ in model.named_parameters()]
    for name in names:
        assert layer_id(name, TINY_DEPTHS) == official_get_num_layer_for_convnext(official_name(name)), name
        assert layer_id(name, TINY_DEPTHS, "single") == official_single(official_name(name), TINY_DEPTHS), name
    prefix = "convnextv2" if v2 else "convnext"
    # the official table for [3, 3, 9, 3] written out by hand
    table = {f"{prefix}.embeddings.patch_embeddings.weight": 0,
             f"{prefix}.encoder.stages.0.layers.2.dwconv.weight": 1,
             f"{prefix}.encoder.stages.1.downsampling_layer.1.weight": 2,
             f"{prefix}.encoder.stages.1.layers.0.pwconv1.weight": 2,
             f"{prefix}.encoder.stages.2.downsampling_layer.0.weight": 3,
             f"{prefix}.encoder.stages.2.layers.2.pwconv2.weight": 3,
             f"{prefix}.encoder.stages.2.layers.3.dwconv.bias": 4,
             f"{prefix}.encoder.stages.2.layers.8.pwconv1.bias": 5,
             f"{prefix}.encoder.stages.3.downsampling_layer.1.weight": 12,
             f"{prefix}.encoder.stages.3.layers.2.dwconv.weight": 12,
             f"{prefix}.layernorm.weight": 13, "classifier.weight": 13, "classifier.bias": 13}
    for name, expected in table.items():
        assert name in names and layer_id(name, TINY_DEPTHS) == expected, name


def test_layer_decay_groups_scale_and_split_weight_decay():
    model = tiny_shaped()
    groups = layer_decay_groups(model, 0.8, 0.05, no_weight_decay)
    by_param = {id(p): g for g in groups for p in g["params"]}
    assert len(by_param) == sum(1 for _ in model.parameters())  # every parameter exactly once
    keys = [(g["name"]) for g in groups]
    assert len(keys) == len(set(keys))
    for name, param in model.named_parameters():
        group = by_param[id(param)]
        lid = official_get_num_layer_for_convnext(official_name(name))
        assert group["lr_scale"] == pytest.approx(0.8 ** (12 + 1 - lid)), name
        decays = not (param.ndim == 1)  # V1: every 1-d tensor (bias, norm, layer scale) is exempt
        assert group["weight_decay"] == (0.05 if decays else 0.0), name


def test_layer_decay_sets_each_groups_learning_rate():
    model = tiny_shaped(depths=[1, 1, 1, 1])
    optimizer = build_optimizer(model, 1e-3, 0.05, layer_decay=0.5)
    batches = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    train_one_epoch(model, batches, optimizer, lambda s: 1e-3, 0, recipe=StepRecipe())
    for group in optimizer.param_groups:
        lid = int(group["name"].split("_")[1])
        assert group["lr"] == pytest.approx(1e-3 * 0.5 ** (13 - lid))


# ---- EMA ----------------------------------------------------------------------------------------
def test_ema_after_k_steps_is_the_closed_form():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    w0 = model.weight.detach().clone()
    ema = ModelEma(model, 0.9)
    steps = [torch.randn(2, 3) for _ in range(5)]
    for w in steps:
        with torch.no_grad():
            model.weight.copy_(w)
        ema.update(model)
    d, k = 0.9, len(steps)
    closed = d ** k * w0 + sum((1 - d) * d ** (k - 1 - t) * w for t, w in enumerate(steps))
    torch.testing.assert_close(ema.module.weight, closed, rtol=1e-6, atol=1e-7)


def test_ema_is_updated_after_each_optimizer_step_only():
    """Three micro-batches with --accum-steps 2: two optimizer steps, so two EMA updates."""
    torch.manual_seed(0)
    model = tiny_shaped(depths=[1, 1, 1, 1])
    ema = ModelEma(model, 0.5)
    start = model.classifier.bias.detach().clone()
    seen = []
    optimizer = build_optimizer(model, 1e-2, 0.0)
    original_step = optimizer.step

    def recording_step(*a, **k):
        out = original_step(*a, **k)
        seen.append(model.classifier.bias.detach().clone())
        return out

    optimizer.step = recording_step
    batches = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1])) for _ in range(3)]
    train_one_epoch(model, batches, optimizer, lambda s: 1e-2, 0, recipe=StepRecipe(accum_steps=2, ema=ema))
    assert len(seen) == 2
    closed = 0.25 * start + 0.5 * 0.5 * seen[0] + 0.5 * seen[1]
    torch.testing.assert_close(ema.module.classifier.bias, closed, rtol=1e-6, atol=1e-7)


# ---- mixup / cutmix -----------------------------------------------------------------------------
def test_mixup_targets_by_hand():
    labels = torch.tensor([0, 2, 1])
    got = mixup_targets(labels, 3, lam=0.7, smoothing=0.3)
    on, off = 1 - 0.3 + 0.1, 0.1  # off = 0.3 / 3
    # row i mixes label i (0.7) with label of row n-1-i (0.3): (0, 1), (2, 2), (1, 0)
    expected = [[0.7 * on + 0.3 * off, 0.7 * off + 0.3 * on, off],
                [off, off, on],
                [0.7 * off + 0.3 * on, 0.7 * on + 0.3 * off, off]]
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(got.sum(1).numpy(), 1.0, rtol=1e-6)


def test_soft_target_cross_entropy_of_smoothed_one_hot_is_label_smoothing():
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 3, 1, 1, 2])
    ours = soft_target_cross_entropy(logits, mixup_targets(labels, 4, 1.0, 0.1))
    ref = F.cross_entropy(logits, labels, label_smoothing=0.1, reduction="none")
    torch.testing.assert_close(ours, ref)


def test_mixup_blends_the_batch_with_itself_reversed():
    x = torch.randn(4, 3, 8, 8)
    y = torch.tensor([0, 1, 2, 1])
    mix = Mixup(mixup_alpha=0.8, label_smoothing=0.0, num_classes=3)
    mixed, targets, lam = mix(x, y, np.random.default_rng(5))
    lam_ref = np.random.default_rng(5).beta(0.8, 0.8)  # mixup only: the first draw is lambda
    assert lam == pytest.approx(lam_ref)
    torch.testing.assert_close(mixed, lam_ref * x + (1 - lam_ref) * x.flip(0))
    np.testing.assert_allclose(targets[0].numpy(), [lam_ref, 1 - lam_ref, 0], rtol=1e-6)


def test_cutmix_lambda_is_the_pasted_area():
    """Each image is one constant; the fraction of pixels that come from the reversed batch is 1 - lambda."""
    x = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 3, 20, 30).clone()
    y = torch.arange(6)
    mix = Mixup(cutmix_alpha=1.0, label_smoothing=0.0, num_classes=6)
    clipped = 0
    for seed in range(200):
        mixed, targets, lam = mix(x, y, np.random.default_rng(seed))
        pasted = (mixed[0] == 5).float().mean().item()
        assert lam == pytest.approx(1 - pasted, abs=1e-6), seed
        assert targets[0, 0].item() == pytest.approx(lam) and targets[0, 5].item() == pytest.approx(1 - lam)
        drawn = np.random.default_rng(seed).beta(1.0, 1.0)  # cutmix only: the first draw is lambda
        cut_h, cut_w = int(20 * math.sqrt(1 - drawn)), int(30 * math.sqrt(1 - drawn))
        unclipped = (2 * (cut_h // 2)) * (2 * (cut_w // 2)) / 600
        assert pasted <= unclipped + 1e-6
        clipped += pasted < unclipped - 1e-6
    assert clipped > 20  # boxes over the border happen, and lambda follows the clipped area


def test_cutmix_box_hand_case():
    class Fixed:
        def integers(self, lo, hi):
            return hi - 1  # centre on the last row / column: the box is cut in half by the border

    assert cutmix_box(10, 10, 0.64, Fixed()) == (6, 10, 6, 10)  # side sqrt(0.36) * 10 = 6 -> 9 -/+ 3, clipped


def test_mixup_and_cutmix_switch_with_probability_one_half():
    mix = Mixup(mixup_alpha=0.8, cutmix_alpha=1.0)
    picks = [mix.draw(np.random.default_rng(s))[1] for s in range(4000)]
    assert abs(np.mean(picks) - 0.5) < 0.03
    only_cutmix = Mixup(cutmix_alpha=1.0)
    assert all(only_cutmix.draw(np.random.default_rng(s))[1] for s in range(50))


# ---- random erasing -----------------------------------------------------------------------------
def test_random_erasing_statistics():
    erase = RandomErasing(0.4)
    h, w = 60, 80
    rng = random.Random(0)
    boxes = [erase.box(h, w, rng) for _ in range(6000)]
    done = [b for b in boxes if b is not None]
    assert abs(len(done) / len(boxes) - 0.4) < 0.03
    areas = np.array([bh * bw / (h * w) for _, _, bh, bw in done])
    assert areas.min() >= 0.015 and areas.max() <= 1 / 3 + 0.02  # [0.02, 1/3] up to rounding
    logs = np.array([math.log(bh / bw) for _, _, bh, bw in done])
    assert abs(logs.mean()) < 0.05  # log-uniform aspect ratio, symmetric around 1
    assert logs.min() >= math.log(0.3) - 0.2 and logs.max() <= -math.log(0.3) + 0.2
    for top, left, bh, bw in done:
        assert 0 <= top and top + bh <= h and 0 <= left and left + bw <= w
    image = torch.zeros(3, h, w)
    erase_always = RandomErasing(1.0)
    out = erase_always(image, random.Random(1), torch.Generator().manual_seed(0))
    noise = out[out != 0]
    assert noise.numel() > 0.02 * 3 * h * w * 0.9
    assert abs(noise.mean().item()) < 0.1 and abs(noise.std().item() - 1) < 0.1  # standard-normal pixels


# ---- RandAugment --------------------------------------------------------------------------------
def test_parse_randaugment_strings():
    c = parse_randaugment("rand-m9-mstd0.5-inc1")
    assert (c.magnitude, c.num_ops, c.magnitude_std, c.increasing, c.prob) == (9, 2, 0.5, True, 0.5)
    c = parse_randaugment("rand-n3-m7-p1")
    assert (c.magnitude, c.num_ops, c.increasing, c.prob) == (7, 3, False, 1.0)
    for bad in ("rnd-m9", "rand-q3", "rand-mx"):
        with pytest.raises(ValueError, match="--randaugment"):
            parse_randaugment(bad)
    with pytest.raises(TrainingError, match="--randaugment"):
        TrainOptions(data="", model="", out="", randaugment="rand-zz").validate()


def test_randaugment_levels_are_timms_at_magnitude_9():
    rng = random.Random(0)
    assert abs(_level_args("Rotate", 9, rng)[0]) == pytest.approx(27.0)
    assert abs(_level_args("ShearX", 9, rng)[0]) == pytest.approx(0.27)
    assert abs(_level_args("TranslateYRel", 9, rng)[0]) == pytest.approx(0.405)
    assert _level_args("PosterizeIncreasing", 9, rng) == (4 - 3,)
    assert _level_args("Posterize", 9, rng) == (3,)
    assert _level_args("SolarizeIncreasing", 9, rng) == (256 - 230,)
    assert _level_args("SolarizeAdd", 9, rng) == (99,)
    assert _level_args("Color", 9, rng)[0] == pytest.approx(1.72)
    assert _level_args("ContrastIncreasing", 9, rng)[0] in (pytest.approx(1.81), pytest.approx(0.19))
    signs = {np.sign(_level_args("Rotate", 5, rng)[0]) for _ in range(50)}
    assert signs == {-1.0, 1.0}


def test_randaugment_ops_by_hand():
    pixels = np.zeros((4, 10, 3), dtype=np.uint8)
    pixels[:, 0] = 100
    pixels[:, 1] = 200
    image = Image.fromarray(pixels)
    added = np.asarray(_apply("SolarizeAdd", image, (99,), (0, 0, 0)))
    assert added[0, 0, 0] == 199 and added[0, 1, 0] == 200 and added[0, 5, 0] == 99  # below 128 only
    moved = np.asarray(_apply("TranslateXRel", image, (-0.3,), (7, 7, 7)))  # 3 px to the right
    assert moved[0, 3, 0] == 100 and moved[0, 4, 0] == 200 and moved[0, 0, 0] == 7  # filled with the mean


def test_randaugment_magnitude_noise_and_op_choice():
    ra = RandAugment(parse_randaugment("rand-m9-mstd0.5-inc1"))
    rng = random.Random(0)
    m = np.array([ra.magnitude(rng) for _ in range(5000)])
    assert abs(m.mean() - 9) < 0.03 and abs(m.std() - 0.5) < 0.03
    top = RandAugment(parse_randaugment("rand-m10-mstd2"))
    assert max(top.magnitude(rng) for _ in range(500)) == 10  # clipped to the top level
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8))
    never = RandAugment(parse_randaugment("rand-m9-p0"))
    assert np.array_equal(np.asarray(never(image, random.Random(0))), np.asarray(image))
    assert len(INCREASING_OPS) == 15


# ---- accumulation, clipping, freezing -----------------------------------------------------------
def grads_after(model, batches, accum, clip=None):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the weights stay, the gradients remain
    train_one_epoch(model, batches, optimizer, lambda s: 0.0, 0, label_smoothing=0.1,
                    recipe=StepRecipe(accum_steps=accum, clip_grad=clip))
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    model = tiny_shaped(depths=[1, 1, 1, 1])
    for p in model.parameters():  # no default init: a layer scale of 1e-6 would hide the blocks
        torch.nn.init.normal_(p, std=0.2)
    x, y = torch.randn(8, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    big = grads_after(model, [(x, y)], accum=1)
    small = grads_after(model, [(x[:4], y[:4]), (x[4:], y[4:])], accum=2)
    for name in big:
        torch.testing.assert_close(small[name], big[name], rtol=1e-4, atol=1e-6)
    assert any(g.abs().max() > 1e-3 for g in big.values())


def test_clipping_scales_the_gradient_to_the_norm():
    torch.manual_seed(0)
    model = tiny_shaped(depths=[1, 1, 1, 1])
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.2)
    batch = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]))]
    raw = grads_after(model, batch, accum=1)
    norm = math.sqrt(sum(float((g.double() ** 2).sum()) for g in raw.values()))
    clipped = grads_after(model, batch, accum=1, clip=norm / 4)
    for name in raw:
        torch.testing.assert_close(clipped[name], raw[name] * (norm / 4) / (norm + 1e-6), rtol=1e-5, atol=1e-8)


def test_freeze_trunk_trains_the_classifier_only():
    torch.manual_seed(0)
    model = tiny_shaped(depths=[1, 1, 1, 1])
    model.config.drop_path_rate = 0.5
    freeze_trunk(model)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, 1e-2, 0.05)
    held = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert held == {id(model.classifier.weight), id(model.classifier.bias)}
    batches = [(torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])) for _ in range(2)]
    train_one_epoch(model, batches, optimizer, lambda s: 1e-2, 0, recipe=StepRecipe(freeze_trunk=True))
    for name, param in model.named_parameters():
        changed = not torch.equal(param, before[name])
        assert changed == name.startswith("classifier."), name
    assert not model.convnext.training and model.training  # the frozen trunk computes as in inference


def test_recipe_option_checks():
    for field, value, flag in [("ema", 1.0, "--ema"), ("mixup", -1.0, "--mixup"), ("reprob", 1.5, "--reprob"),
                               ("layer_decay", 0.0, "--layer-decay"), ("accum_steps", 0, "--accum-steps"),
                               ("clip_grad", 0.0, "--clip-grad"), ("head_init_scale", 0.0, "--head-init-scale")]:
        with pytest.raises(TrainingError, match=flag):
            TrainOptions(data="", model="", out="", **{field: value}).validate()
