"""The PyTorch twin under the tools users apply to a model (peft, torch.ao quantization, hooks,
module replacement, parametrizations, autocast, torch function modes, safetensors, transformers'
Trainer, accelerate, torchvision's feature extraction, pickling).

The reference for each modification is transformers' ConvNeXt (the same module names, so the
same state dict) with the same modification applied, or, where noted, this model with its fast
path (convnext_pt/fused.py) switched off. Weights are re-drawn so that every block matters.
"""

from __future__ import annotations

import copy
import io
import pickle

import numpy as np
import pytest
import torch
from torch import nn

from convnext_pt import ConvNextBackbone, ConvNextForImageClassification, ConvNextV2ForImageClassification, fused
from helpers import redraw_, tiny_config as config

transformers = pytest.importorskip("transformers")

TOL = 1e-5


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double(), b.detach().double()
    return ((a - b).abs().max() / max(1.0, b.abs().max().item())).item()


def twin_and_reference(v2: bool = False, **kw):
    """Our classifier and transformers' with the same re-drawn weights, both in eval mode."""
    ours = ConvNextV2ForImageClassification if v2 else ConvNextForImageClassification
    cfg = config(v2, **kw)
    model = ours(cfg).eval()
    redraw_(model, seed=1)
    ref_cls = transformers.ConvNextV2ForImageClassification if v2 else transformers.ConvNextForImageClassification
    ref_cfg_cls = transformers.ConvNextV2Config if v2 else transformers.ConvNextConfig
    ref = ref_cls(ref_cfg_cls(depths=cfg.depths, hidden_sizes=cfg.hidden_sizes, num_labels=cfg.num_labels,
                              hidden_act=cfg.hidden_act)).eval()
    ref.load_state_dict(model.state_dict())
    return model, ref


def blocks(model: nn.Module):
    return [m for name, m in model.named_modules() if type(m).__name__.endswith("Layer") and hasattr(m, "pwconv1")]


@pytest.fixture
def x():
    return torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))


def test_unmodified_model_matches_the_reference_in_every_mode(x):
    # the baseline the other tests build on: fast path on (no_grad, inference_mode) or off (grad)
    model, ref = twin_and_reference()
    with torch.no_grad():
        expected = ref(x).logits
        assert rel(model(x).logits, expected) <= TOL
    with torch.inference_mode():
        assert rel(model(x).logits, expected) <= TOL
    assert rel(model(x).logits, expected) <= TOL


# --- peft ---------------------------------------------------------------------------------------

def _lora(model):
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)  # init_lora_weights=False draws both A and B: the adapter changes the output
    cfg = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["pwconv1", "pwconv2"], init_lora_weights=False)
    return peft.get_peft_model(model, cfg)


@pytest.mark.parametrize("v2", [False, True])
def test_peft_lora_inference_applies_the_adapters(x, v2):
    model, ref = twin_and_reference(v2)
    with torch.no_grad():
        base = model(x).logits.clone()
    lora_model, lora_ref = _lora(model), _lora(ref)
    lora_ref.load_state_dict(lora_model.state_dict())  # the same adapter weights in both
    for ctx in (torch.no_grad, torch.inference_mode):
        with ctx():
            out, expected = lora_model(pixel_values=x).logits, lora_ref(pixel_values=x).logits
        assert rel(out, expected) <= TOL
        assert rel(out, base) > 1e-3  # the adapters do change the result


def test_peft_lora_training_step_updates_only_the_adapters(x):
    model, _ = twin_and_reference()
    lora_model = _lora(model)
    frozen = {k: v.clone() for k, v in lora_model.named_parameters() if not v.requires_grad}
    optimizer = torch.optim.SGD([p for p in lora_model.parameters() if p.requires_grad], lr=0.1)
    loss = lora_model(pixel_values=x, labels=torch.tensor([1, 3])).loss
    loss.backward()
    grads = {k: p.grad for k, p in lora_model.named_parameters() if p.requires_grad}
    assert any("lora_A" in k for k in grads) and all(g is not None and g.abs().sum() > 0 for g in grads.values())
    optimizer.step()
    assert all(torch.equal(v, dict(lora_model.named_parameters())[k]) for k, v in frozen.items())


# --- quantization, dtypes, autocast, modes --------------------------------------------------------

def test_dynamic_int8_quantization_runs_like_the_reference(x):
    model, ref = twin_and_reference()
    qmodel = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    qref = torch.ao.quantization.quantize_dynamic(ref, {nn.Linear}, dtype=torch.qint8)
    assert type(qmodel.convnext.encoder.stages[0].layers[0].pwconv1).__module__.startswith("torch.ao")
    with torch.no_grad():
        out, expected, fp32 = qmodel(x).logits, qref(x).logits, model(x).logits
    assert rel(out, expected) <= 1e-4
    assert 1e-4 < rel(out, fp32) < 0.1  # quantized: close to float32, but not float32


def test_other_dtypes_and_autocast_compute_what_the_modules_compute(x, monkeypatch):
    model, ref = twin_and_reference()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model(x).logits.float()
        monkeypatch.setattr(fused, "_fusable", lambda *a: False)
        plain = model(x).logits.float()
    assert torch.equal(fast, plain)  # autocast's bfloat16 matmuls, not a float32 fused GEMM
    with torch.no_grad():
        fp32 = model(x).logits
    assert rel(fast, fp32) > 1e-4
    monkeypatch.undo()
    with torch.no_grad():
        out = copy.deepcopy(model).double()(x.double()).logits
        assert rel(out, ref.double()(x.double()).logits) <= 1e-10


def test_torch_function_and_dispatch_modes_see_the_standard_ops(x, monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    model, _ = twin_and_reference()

    def flops():
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
        return counter.get_total_flops()

    counted = flops()
    monkeypatch.setattr(fused, "_fusable", lambda *a: False)
    assert counted == flops() > 0


# --- hooks, module replacement, parametrizations --------------------------------------------------

@pytest.mark.parametrize("grad_mode", [torch.no_grad, torch.inference_mode])
@pytest.mark.parametrize("target", ["pwconv1", "act", "pwconv2"])
def test_forward_hooks_fire_and_take_effect(x, grad_mode, target):
    model, ref = twin_and_reference()
    calls = []

    def edit(module, args, output):
        calls.append(module)
        return output * 0.5 + 0.1

    for m in (model, ref):
        getattr(blocks(m)[2], target).register_forward_hook(edit)
    with grad_mode():
        out = model(x).logits
        expected = ref(x).logits
    assert len(calls) == 2
    assert rel(out, expected) <= TOL


@pytest.mark.parametrize("target", ["pwconv1", "act"])
def test_pre_hooks_and_global_hooks_fire(x, target):
    model, ref = twin_and_reference()
    seen = []

    def pre(module, args):
        seen.append("pre")
        return (args[0] * 2.0,)

    for m in (model, ref):
        getattr(blocks(m)[0], target).register_forward_pre_hook(pre)
    with torch.inference_mode():
        assert rel(model(x).logits, ref(x).logits) <= TOL
    assert seen == ["pre", "pre"]

    linears = []
    handle = nn.modules.module.register_module_forward_hook(
        lambda module, args, out: linears.append(module) if isinstance(module, nn.Linear) else None)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    assert len(linears) == 2 * len(blocks(model)) + 1  # every pwconv1/pwconv2 and the classifier


class Shifted(nn.Module):
    def forward(self, t):
        return torch.tanh(t) + 0.25


@pytest.mark.parametrize("replace", ["act", "pwconv1", "act-gelu-tanh"])
def test_replaced_modules_run(x, replace):
    model, ref = twin_and_reference()
    for m in (model, ref):
        block = blocks(m)[1]
        if replace == "act":
            block.act = Shifted()
        elif replace == "act-gelu-tanh":
            block.act = nn.GELU(approximate="tanh")
        else:
            torch.manual_seed(5)
            block.pwconv1 = nn.Sequential(nn.Linear(16, 64), nn.Hardswish())
    if replace == "pwconv1":
        blocks(ref)[1].pwconv1.load_state_dict(blocks(model)[1].pwconv1.state_dict())
    with torch.no_grad():
        assert rel(model(x).logits, ref(x).logits) <= TOL


def test_instance_forward_override_is_honoured(x):
    model, ref = twin_and_reference()
    for m in (model, ref):
        block = blocks(m)[0]
        block.pwconv2.forward = lambda t, layer=block.pwconv2: nn.functional.linear(t, layer.weight) * 3
    with torch.no_grad():
        assert rel(model(x).logits, ref(x).logits) <= TOL


def test_activation_attribute_changed_after_construction_is_honoured(x, monkeypatch):
    # transformers' GELU has no `approximate` to change: the reference is the unfused path
    model, _ = twin_and_reference()
    with torch.no_grad():
        before = model(x).logits
        for block in blocks(model):
            block.act.approximate = "tanh"
        fast = model(x).logits
        monkeypatch.setattr(fused, "_fusable", lambda *a: False)
        plain = model(x).logits
    assert rel(fast, plain) <= TOL and rel(fast, before) > 20 * max(rel(fast, plain), 1e-7)


def test_parametrized_weights_are_used(x):
    from torch.nn.utils import parametrize

    class Halved(nn.Module):
        def forward(self, w):
            return w * 0.5

    model, ref = twin_and_reference()
    for m in (model, ref):
        parametrize.register_parametrization(blocks(m)[2].pwconv1, "weight", Halved())
        nn.utils.parametrizations.weight_norm(blocks(m)[3].pwconv2)
    with torch.no_grad():
        assert rel(model(x).logits, ref(x).logits) <= TOL


def test_frozen_model_trains_a_new_head_like_the_reference(x):
    model, ref = twin_and_reference()
    for m in (model, ref):
        for p in m.parameters():
            p.requires_grad_(False)
        m.classifier.weight.requires_grad_(True)
    labels = torch.tensor([0, 4])
    loss, ref_loss = model(x, labels=labels).loss, ref(x, labels=labels).loss
    loss.backward()
    ref_loss.backward()
    assert rel(model.classifier.weight.grad, ref.classifier.weight.grad) <= TOL


# --- saving and the ecosystem's I/O -----------------------------------------------------------------

def test_state_dict_saves_with_safetensors_and_reloads(tmp_path, x):
    from safetensors.torch import load_file, save_file

    model, _ = twin_and_reference()
    state = model.state_dict()
    assert all(t.is_contiguous() for t in state.values())
    save_file(state, str(tmp_path / "model.safetensors"))
    fresh = ConvNextForImageClassification(model.config).eval()
    fresh.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    with torch.no_grad():
        assert torch.equal(fresh(x).logits, model(x).logits)


def test_state_dict_tensors_are_the_parameters():
    model, _ = twin_and_reference()
    key = "convnext.embeddings.patch_embeddings.weight"
    model.state_dict()[key].zero_()  # an in-place edit through the state dict reaches the model
    assert model.convnext.embeddings.patch_embeddings.weight.abs().sum() == 0


def test_whole_model_pickles_and_deep_copies(x):
    model, _ = twin_and_reference()
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)  # our own object, written just above
    copied = pickle.loads(pickle.dumps(copy.deepcopy(model)))
    with torch.no_grad():
        expected = model(x).logits
        assert torch.equal(loaded(x).logits, expected) and torch.equal(copied(x).logits, expected)


def test_accelerate_save_model_writes_loadable_safetensors(tmp_path, x):
    accelerate = pytest.importorskip("accelerate")
    from safetensors.torch import load_file

    model, _ = twin_and_reference()
    accelerate.Accelerator(cpu=True).save_model(model, tmp_path)
    fresh = ConvNextForImageClassification(model.config).eval()
    fresh.load_state_dict(load_file(str(tmp_path / "model.safetensors")))
    with torch.no_grad():
        assert torch.equal(fresh(x).logits, model(x).logits)


class _Images(torch.utils.data.Dataset):
    def __init__(self, n: int = 16):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 32, 32, generator=g)
        self.y = torch.randint(0, 5, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"pixel_values": self.x[i], "labels": self.y[i]}


class _StopAt(transformers.TrainerCallback):
    """Interrupts training after ``step`` steps, as a killed job would (the schedule is the full run's)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            control.should_training_stop = True


def _trainer(model, out, max_steps: int, stop_at: int | None = None):
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=max_steps, per_device_train_batch_size=4, learning_rate=1e-3,
        save_steps=2, save_strategy="steps", logging_strategy="no", report_to=[], use_cpu=True, seed=0,
        data_seed=0, dataloader_num_workers=0, disable_tqdm=True)
    callbacks = [_StopAt(stop_at)] if stop_at else []
    return transformers.Trainer(model=model, args=args, train_dataset=_Images(), callbacks=callbacks)


def test_transformers_trainer_saves_and_resumes_exactly(tmp_path):
    def fresh():
        model = ConvNextForImageClassification(config(depths=[1, 1, 1, 1]))
        redraw_(model, seed=2)
        return model

    straight = fresh()
    _trainer(straight, tmp_path / "straight", 4).train()
    first = fresh()
    _trainer(first, tmp_path / "split", 4, stop_at=2).train()
    checkpoint = tmp_path / "split" / "checkpoint-2"
    assert (checkpoint / "model.safetensors").is_file()
    resumed = fresh()
    _trainer(resumed, tmp_path / "split", 4).train(resume_from_checkpoint=str(checkpoint))
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert not torch.equal(straight.classifier.weight, fresh().classifier.weight)  # it did train


# --- torch.fx ---------------------------------------------------------------------------------------

#: the classifier's optional arguments, fixed for tracing (None: the config's choice, no labels)
OPTIONAL_ARGS = {"labels": None, "output_hidden_states": None, "return_dict": None}

@pytest.mark.parametrize("train", [False, True])
def test_torchvision_feature_extraction(x, train):
    from torchvision.models.feature_extraction import create_feature_extractor

    model, _ = twin_and_reference(drop_path_rate=0.2)
    nodes = {"convnext.encoder.stages.1": "stage2", "convnext.encoder.stages.3.layers.0.act": "act",
             "classifier": "logits"}
    # torch.fx traces one choice of the optional arguments: fx's standard concrete_args
    extractor = create_feature_extractor(model, return_nodes=nodes, concrete_args=OPTIONAL_ARGS)
    captured = {}
    blocks(model)[-1].act.register_forward_hook(lambda m, a, out: captured.setdefault("act", out))
    model.train(train)
    extractor.train(train)
    torch.manual_seed(0)
    with torch.no_grad():
        feats = extractor(x)
        torch.manual_seed(0)
        out = model(x, output_hidden_states=True)
    assert rel(feats["stage2"], out.hidden_states[2]) <= TOL
    assert rel(feats["act"], captured["act"]) <= TOL
    assert rel(feats["logits"], out.logits) <= TOL


def test_backbone_traces_with_torch_fx(x):
    backbone = ConvNextBackbone(config(out_features=["stage2", "stage4"])).eval()
    redraw_(backbone)
    traced = torch.fx.symbolic_trace(backbone, concrete_args={"output_hidden_states": None, "return_dict": None})
    with torch.no_grad():
        for a, b in zip(traced(x).feature_maps, backbone(x).feature_maps):
            assert rel(a, b) <= TOL
    with pytest.raises(ValueError, match="pixel_values must be"):
        traced(torch.randn(1, 4, 32, 32))


def test_torch_fx_traces_the_choice_given_as_concrete_args(x):
    """fx's concrete_args fix the optional arguments: the traced graph returns every hidden state,
    each as the eager model computes it."""
    model, _ = twin_and_reference()
    traced = torch.fx.symbolic_trace(model, concrete_args={**OPTIONAL_ARGS, "output_hidden_states": True})
    with torch.no_grad():
        out, expected = traced(x, None, True), model(x, output_hidden_states=True)  # fx checks the value given
    assert len(out.hidden_states) == len(expected.hidden_states) == 5
    for a, b in zip((out.logits,) + out.hidden_states, (expected.logits,) + expected.hidden_states):
        assert rel(a, b) <= TOL


def test_fast_path_is_exercised_where_nothing_is_modified(x, monkeypatch):
    # the guard against a vacuous suite: on a oneDNN CPU the plain model does take the fused path
    if not fused._HAS_ONEDNN:
        pytest.skip("no oneDNN")
    model, _ = twin_and_reference()
    taken = []
    real = fused._fusable
    monkeypatch.setattr(fused, "_fusable", lambda *a: taken.append(real(*a)) or taken[-1])
    with torch.no_grad():
        model(x)
    assert taken and all(taken)
    taken.clear()
    blocks(model)[0].act.register_forward_hook(lambda *a: None)
    with torch.no_grad():
        model(x)
    assert taken.count(False) == 1
