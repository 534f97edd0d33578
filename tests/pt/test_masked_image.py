"""FCMAE pre-training in the PyTorch twin against a reference written from the official sparse code
(tests/fcmae_reference.py), loading as every V2 class, and the random mask."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import rel_err
from fcmae_reference import fcmae_forward, official_state
from helpers import redraw_

from convnext_common.config import ConfigError, ConvNextV2Config
from convnext_pt import (
    AutoModelForMaskedImageModeling, ConvNextV2Backbone, ConvNextV2ForImageClassification,
    ConvNextV2ForMaskedImageModeling, ConvNextV2Model,
)

DEPTHS = [1, 1, 2, 1]


def small_config(**changes) -> ConvNextV2Config:
    return ConvNextV2Config(depths=DEPTHS, hidden_sizes=[8, 12, 16, 24], decoder_hidden_size=16, **changes)


def masks(batch: int, num_patches: int, seed: int = 1) -> np.ndarray:
    """Several removed patches per image, a different set in each, at least one visible."""
    rng = np.random.default_rng(seed)
    out = rng.random((batch, num_patches)) < 0.5
    out[:, 0] = False
    out[:, -1] = True
    return out


@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_equals_the_official_sparse_forward(norm_pix_loss):
    config = small_config(norm_pix_loss=norm_pix_loss, decoder_num_hidden_layers=2)
    torch.manual_seed(0)
    model = ConvNextV2ForMaskedImageModeling(config).eval()
    redraw_(model, seed=3)
    images = np.random.default_rng(0).standard_normal((3, 3, 64, 96)).astype(np.float32)
    removed = masks(3, 6)
    with torch.no_grad():
        out = model(torch.from_numpy(images), bool_masked_pos=torch.from_numpy(removed), output_hidden_states=True)
    sd = official_state(model.state_dict(), DEPTHS, 2)
    loss, pred, encoded = fcmae_forward(sd, images, removed, DEPTHS, 2, norm_pix_loss)
    assert rel_err(out.logits.numpy(), pred) <= 1e-4
    assert rel_err(out.hidden_states[-1].numpy(), encoded) <= 1e-4
    assert abs(float(out.loss) - loss) / max(1.0, abs(loss)) <= 1e-4
    np.testing.assert_array_equal(out.mask.numpy(), removed.astype(np.float32))


def test_batch_statistics_are_shared():
    """The sparse GRN norms run over the whole batch: one image's output depends on another's."""
    model = ConvNextV2ForMaskedImageModeling(small_config()).eval()
    redraw_(model, seed=4)
    images = torch.randn(2, 3, 64, 64)
    removed = torch.tensor([[True, False, False, True]] * 2)
    with torch.no_grad():
        both = model(images, bool_masked_pos=removed).logits
        alone = model(images[:1], bool_masked_pos=removed[:1]).logits
    assert not torch.allclose(both[:1], alone, atol=1e-4)


def test_random_mask_is_the_official_one_and_reproducible():
    config = small_config(mask_ratio=0.75)
    model = ConvNextV2ForMaskedImageModeling(config)
    images = torch.randn(4, 3, 128, 64)
    a = model(images, generator=torch.Generator().manual_seed(7)).mask
    b = model(images, generator=torch.Generator().manual_seed(7)).mask
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 8)
    assert (a.sum(dim=1) == 8 - int(8 * 0.25)).all()
    # the official gen_random_mask from the same noise
    noise = torch.randn(4, 8, generator=torch.Generator().manual_seed(7))
    ids_restore = torch.argsort(torch.argsort(noise, dim=1), dim=1)
    official = torch.ones(4, 8)
    official[:, :int(8 * 0.25)] = 0
    torch.testing.assert_close(a, torch.gather(official, 1, ids_restore))


def test_bad_input_is_refused():
    model = ConvNextV2ForMaskedImageModeling(small_config())
    with pytest.raises(ValueError, match="divisible by the patch size 32"):
        model(torch.randn(1, 3, 48, 64))
    with pytest.raises(ValueError, match="bool_masked_pos"):
        model(torch.randn(1, 3, 64, 64), bool_masked_pos=torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="mask_ratio"):
        ConvNextV2ForMaskedImageModeling(small_config(mask_ratio=1.5))


def test_pretrained_folder_loads_as_every_v2_class(tmp_path):
    model = ConvNextV2ForMaskedImageModeling(small_config(mask_ratio=0.5, norm_pix_loss=True))
    redraw_(model, seed=5)
    model.save_pretrained(tmp_path)
    again = AutoModelForMaskedImageModeling.from_pretrained(tmp_path)
    assert type(again) is ConvNextV2ForMaskedImageModeling
    assert again.config.mask_ratio == 0.5 and again.config.norm_pix_loss is True
    for k, v in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[k], v)
    trunk = {k[len("convnextv2."):]: v for k, v in model.state_dict().items() if k.startswith("convnextv2.")}
    base, info = ConvNextV2Model.from_pretrained(tmp_path, output_loading_info=True)
    assert all(k.startswith("decoder.") for k in info["unexpected_keys"]) and info["unexpected_keys"]
    for k, v in base.state_dict().items():
        torch.testing.assert_close(v, trunk[k])
    with pytest.warns(UserWarning, match="classifier"):
        clf = ConvNextV2ForImageClassification.from_pretrained(tmp_path, num_labels=3)
    torch.testing.assert_close(clf.convnextv2.encoder.stages[1].layers[0].pwconv1.weight,
                               trunk["encoder.stages.1.layers.0.pwconv1.weight"])
    backbone = ConvNextV2Backbone.from_pretrained(tmp_path)
    torch.testing.assert_close(backbone.embeddings.patch_embeddings.weight,
                               trunk["embeddings.patch_embeddings.weight"])


@pytest.mark.slow
def test_pretrained_folder_loads_in_transformers(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = ConvNextV2ForMaskedImageModeling(small_config())
    redraw_(model, seed=6)
    model.save_pretrained(tmp_path)
    theirs = transformers.ConvNextV2Model.from_pretrained(tmp_path).eval()
    ours = ConvNextV2Model.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x).last_hidden_state, ours(x).last_hidden_state, atol=1e-5, rtol=1e-5)
