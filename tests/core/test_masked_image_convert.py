"""`convnext convert` of the official FCMAE pre-training checkpoints (MinkowskiEngine layout): a file
built in that layout from random weights converts to a folder whose masked-image model gives the
numbers of the reference written from the official sparse code, and which fine-tunes as any V2 model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import rel_err
from fcmae_reference import fcmae_forward, official_state
from helpers import redraw_

from convnext_common.checkpoints.pipeline import convert
from convnext_common.checkpoints.errors import UnsupportedCheckpointError
from convnext_common.config import ConvNextV2Config
from convnext_pt import ConvNextV2ForImageClassification, ConvNextV2ForMaskedImageModeling

DEPTHS = [1, 1, 2, 1]


def official_checkpoint(tmp_path, decoder_depth: int = 1, extra: dict | None = None):
    config = ConvNextV2Config(depths=DEPTHS, hidden_sizes=[8, 12, 16, 24], decoder_hidden_size=16,
                              decoder_num_hidden_layers=decoder_depth)
    torch.manual_seed(0)
    model = ConvNextV2ForMaskedImageModeling(config)
    redraw_(model, seed=9)
    sd = official_state(model.state_dict(), DEPTHS, decoder_depth)
    shapes = {k: v.shape for k, v in sd.items()}
    assert shapes["encoder.stages.1.0.dwconv.kernel"] == (49, 12)           # MinkowskiEngine layouts
    assert shapes["encoder.downsample_layers.2.1.kernel"] == (4, 12, 16)
    assert shapes["encoder.stages.0.0.grn.gamma"] == (1, 32)
    assert shapes["encoder.downsample_layers.1.1.bias"] == (1, 12)
    sd.update(extra or {})
    path = tmp_path / "convnextv2_tiny_1k_224_fcmae.pt"
    torch.save({"model": {k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in sd.items()}}, path)
    return path, sd


def test_official_checkpoint_converts_to_the_official_numbers(tmp_path):
    path, sd = official_checkpoint(tmp_path, decoder_depth=2)
    result = convert(path, tmp_path / "out", progress=False)
    assert result.source_format == "fcmae" and result.head == "masked-image-modeling"
    model = ConvNextV2ForMaskedImageModeling.from_pretrained(tmp_path / "out")
    assert model.config.decoder_hidden_size == 16 and model.config.decoder_num_hidden_layers == 2
    images = np.random.default_rng(0).standard_normal((2, 3, 64, 96)).astype(np.float32)
    removed = np.array([[True, False, True, False, True, True], [False, True, True, True, False, True]])
    with torch.no_grad():
        out = model(torch.from_numpy(images), bool_masked_pos=torch.from_numpy(removed))
    loss, pred, _ = fcmae_forward(sd, images, removed, DEPTHS, 2, norm_pix_loss=False)
    assert rel_err(out.logits.numpy(), pred) <= 1e-4
    assert abs(float(out.loss) - loss) <= 1e-4 * max(1.0, abs(loss))
    with pytest.warns(UserWarning, match="classifier"):
        clf = ConvNextV2ForImageClassification.from_pretrained(tmp_path / "out", num_labels=4)
    torch.testing.assert_close(clf.convnextv2.encoder.stages[2].layers[1].dwconv.weight,
                               model.convnextv2.encoder.stages[2].layers[1].dwconv.weight)


def test_what_cannot_be_expressed_is_refused(tmp_path):
    path, _ = official_checkpoint(tmp_path, extra={"encoder.fpn.inner_blocks.0.weight": np.zeros((4, 4, 1, 1))})
    with pytest.raises(UnsupportedCheckpointError, match="feature pyramid"):
        convert(path, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
