"""Behaviour of the PyTorch twin beyond the fixtures: shapes, configs, losses, drop path, init."""

import math

import numpy as np
import pytest
import torch

from convnext_common import ConvNextV2Config
from convnext_pt import (
    ConvNextBackbone, ConvNextForImageClassification, ConvNextModel, ConvNextV2ForImageClassification,
)
from helpers import redraw_, tiny_config


def small(**kw):
    return tiny_config(**{"num_labels": 3, **kw})


@pytest.mark.parametrize("config", [
    small(),
    small(depths=[1, 2], hidden_sizes=[8, 12], num_stages=2),
    small(depths=[2, 1, 1], hidden_sizes=[4, 8, 16], num_stages=3, num_channels=1),
    small(num_channels=4, hidden_act="relu", layer_scale_init_value=0.0),
    small(hidden_act="silu", patch_size=2),
    ConvNextV2Config(depths=[1, 1, 1, 1], hidden_sizes=[8, 16, 24, 32], num_labels=3),
], ids=["4stage", "2stage", "3stage-gray", "4ch-relu-nols", "silu-patch2", "v2"])
@pytest.mark.parametrize("hw", [(32, 32), (70, 90), (96, 160)])
def test_any_config_shapes(config, hw):
    cls = ConvNextV2ForImageClassification if config.model_type == "convnextv2" else ConvNextForImageClassification
    model = cls(config).eval()
    redraw_(model)
    x = torch.randn(2, config.num_channels, *hw)
    with torch.no_grad():
        out = model(x, output_hidden_states=True)
    assert out.logits.shape == (2, config.num_labels)
    assert torch.isfinite(out.logits).all()
    assert len(out.hidden_states) == config.num_stages + 1
    for i, hs in enumerate(out.hidden_states):
        # embeddings and stage 1 keep H/patch; every later stage halves it
        down = config.patch_size * 2 ** max(i - 1, 0)
        assert hs.shape == (2, config.hidden_sizes[max(i - 1, 0)], hw[0] // down, hw[1] // down), i


def test_layer_scale_off_has_no_parameter():
    model = ConvNextModel(small(layer_scale_init_value=0.0))
    assert not any("layer_scale" in k for k in model.state_dict())
    model = ConvNextModel(small(layer_scale_init_value=0.5))
    assert torch.all(model.encoder.stages[0].layers[0].layer_scale_parameter == 0.5)


def test_init_like_transformers():
    config = small(initializer_range=0.05, hidden_sizes=[64, 64, 64, 64], depths=[1, 1, 1, 1])
    model = ConvNextForImageClassification(config)
    w = model.convnext.encoder.stages[1].layers[0].pwconv1.weight
    assert abs(w.std().item() - 0.05) < 0.005 and abs(w.mean().item()) < 0.005
    assert torch.all(model.convnext.encoder.stages[1].layers[0].pwconv1.bias == 0)
    assert torch.all(model.convnext.layernorm.weight == 1) and torch.all(model.convnext.layernorm.bias == 0)
    assert torch.all(model.convnext.encoder.stages[0].layers[0].layer_scale_parameter == 1e-6)


def test_final_norm_uses_layer_norm_eps_and_pooling():
    config = small(layer_norm_eps=1e-3)
    model = ConvNextModel(config).eval()
    redraw_(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
    pooled = out.last_hidden_state.mean(dim=(2, 3)).double().numpy()
    w, b = model.layernorm.weight.detach().double().numpy(), model.layernorm.bias.detach().double().numpy()
    mu, var = pooled.mean(-1, keepdims=True), pooled.var(-1, keepdims=True)
    ref = (pooled - mu) / np.sqrt(var + 1e-3) * w + b
    np.testing.assert_allclose(out.pooler_output.numpy(), ref, atol=1e-5)


def _logits_and_model(config, seed=0):
    torch.manual_seed(seed)
    model = ConvNextForImageClassification(config).eval()
    redraw_(model)
    x = torch.randn(4, 3, 32, 32)
    return model, x


def test_single_label_loss_is_cross_entropy():
    model, x = _logits_and_model(small(num_labels=3))
    labels = torch.tensor([0, 2, 1, 2])
    out = model(x, labels=labels)
    z = out.logits.detach().double().numpy()
    logp = z - np.log(np.exp(z - z.max(1, keepdims=True)).sum(1, keepdims=True)) - z.max(1, keepdims=True)
    ref = -logp[np.arange(4), labels.numpy()].mean()
    assert math.isclose(out.loss.item(), ref, rel_tol=1e-5)
    out.loss.backward()  # trainable end to end
    assert model.convnext.embeddings.patch_embeddings.weight.grad is not None


def test_multi_label_loss_is_bce_with_logits():
    model, x = _logits_and_model(small(num_labels=3))
    labels = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 1], [0, 1, 0]], dtype=torch.float32)
    out = model(x, labels=labels)
    z, y = out.logits.detach().double().numpy(), labels.double().numpy()
    ref = np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z))))
    assert math.isclose(out.loss.item(), ref, rel_tol=1e-5)


@pytest.mark.parametrize("num_labels", [1, 3])
def test_regression_loss_is_mse(num_labels):
    model, x = _logits_and_model(small(num_labels=num_labels, problem_type="regression"))
    labels = torch.randn(4, num_labels)
    out = model(x, labels=labels)
    ref = np.mean((out.logits.detach().double().numpy() - labels.double().numpy()) ** 2)
    assert math.isclose(out.loss.item(), ref, rel_tol=1e-5)


def test_regression_inferred_for_one_label():
    model, x = _logits_and_model(small(num_labels=1))
    labels = torch.randn(4)
    out = model(x, labels=labels)
    ref = np.mean((out.logits.detach().double().numpy()[:, 0] - labels.double().numpy()) ** 2)
    assert math.isclose(out.loss.item(), ref, rel_tol=1e-5)


def test_drop_path_per_sample_in_training_only():
    config = small(drop_path_rate=0.5, depths=[1, 1, 1, 4])
    model = ConvNextModel(config)
    redraw_(model)
    rates = [layer.drop_path.drop_prob for s in model.encoder.stages for layer in s.layers]
    np.testing.assert_allclose(rates, np.linspace(0, 0.5, 7), atol=1e-7)
    x = torch.randn(8, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        a, b = model(x).pooler_output, model(x).pooler_output
    assert torch.equal(a, b)
    model.train()
    torch.manual_seed(0)
    with torch.no_grad():
        c = model(x).pooler_output
    assert not torch.allclose(a, c)
    # per sample: a batch of identical images gives different outputs in training
    with torch.no_grad():
        same = model(x[:1].repeat(8, 1, 1, 1)).pooler_output
    differs_from_first = (same - same[0]).abs().amax(dim=1) > 1e-6
    assert differs_from_first[1:].any()


def test_backbone_feature_maps():
    config = small(out_features=["stem", "stage2", "stage4"])
    model = ConvNextBackbone(config).eval()
    assert model.channels == [8, 16, 32]
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 96), output_hidden_states=True)
    assert [tuple(f.shape) for f in out.feature_maps] == [(1, 8, 16, 24), (1, 16, 8, 12), (1, 32, 2, 3)]
    assert len(out.hidden_states) == 5
    assert model(torch.randn(1, 3, 64, 64), return_dict=False)[0][0].shape == (1, 8, 16, 16)


def test_wrong_channel_count_is_a_clear_error():
    model = ConvNextModel(small())
    with pytest.raises(ValueError, match="pixel_values"):
        model(torch.randn(1, 1, 32, 32))


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_large_activations_stay_finite(dtype):
    config = small(num_labels=3)
    model = ConvNextForImageClassification(config).eval()
    redraw_(model)
    x = torch.randn(2, 3, 64, 64) * 300  # large activations: fp16 variance would overflow
    with torch.no_grad():
        ref = model(x).logits
        try:
            low = model.to(dtype)(x.to(dtype)).logits.float()
        except RuntimeError as e:  # an op missing for this dtype on this CPU
            pytest.skip(f"{dtype} not supported here: {e}")
    assert torch.isfinite(low).all()
    scale = max(1.0, ref.abs().max().item())
    assert (low - ref).abs().max().item() / scale < 0.1


def test_returned_maps_have_the_default_memory_layout():
    """The trunk computes channels-last internally; what it returns must still ``.view`` like NCHW."""
    model = ConvNextBackbone(small(out_features=["stage1", "stage4"])).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 64, 64), output_hidden_states=True)
    for t in out.feature_maps + out.hidden_states:
        assert t.is_contiguous()
        t.view(t.shape[0], t.shape[1], -1)
    trunk = ConvNextModel(small()).eval()
    with torch.no_grad():
        assert trunk(torch.randn(1, 3, 64, 64)).last_hidden_state.is_contiguous()


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "relu", "silu", "quick_gelu"])
def test_fused_cpu_inference_path_equals_the_eager_ops(act, monkeypatch):
    """oneDNN's fused Linear+activation (no-grad CPU inference) against the plain modules."""
    from convnext_pt import fused

    model = ConvNextForImageClassification(small(hidden_act=act)).eval()
    redraw_(model)
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        fast = model(x, output_hidden_states=True)
        monkeypatch.setattr(fused, "_fusable", lambda *args: False)
        plain = model(x, output_hidden_states=True)
    for a, b in zip((fast.logits,) + fast.hidden_states, (plain.logits,) + plain.hidden_states):
        assert (a - b).abs().max().item() <= 1e-5 * max(1.0, b.abs().max().item())


def test_fused_path_is_not_used_when_gradients_are_needed(monkeypatch):
    from convnext_pt import fused

    model = ConvNextForImageClassification(small())
    calls = []
    real = fused._fusable
    monkeypatch.setattr(fused, "_fusable", lambda *a: real(*a) and not calls.append(1))
    model(torch.randn(1, 3, 32, 32)).logits.sum().backward()  # training graph: eager ops only
    assert not calls and model.classifier.weight.grad is not None
    with torch.inference_mode():
        model(torch.randn(1, 3, 32, 32))
    assert calls or not fused._HAS_ONEDNN
