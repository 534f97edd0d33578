"""A reference for FCMAE written from the official code (facebookresearch/ConvNeXt-V2: models/fcmae.py,
models/convnextv2_sparse.py, models/utils.py, utils.remap_checkpoint_keys), independent of the twins.

The encoder is computed as MinkowskiEngine computes it: on a list of sites (image, row, column) that
holds only the visible ones (``to_sparse`` keeps the sites whose stem features are not all zero), with
a per-site LayerNorm, a 7x7 depthwise conv that sums over the neighbours present in the list, a 2x2
stride-2 conv whose output sites are the parents of present sites, and a GRN whose norms run over every
row of the batch's list. The decoder and the loss are the official dense ones. float64, plain torch ops.

Weights come as an official pre-training state dict (``official_state``): MinkowskiEngine kernels
(kernel_volume, in, out) and (kernel_volume, channels), whose offsets are read as the official
fine-tuning remap reads them (kernel index ``x * k + y`` for row offset y and column offset x),
``.ln.``/``.linear.`` wrappers, (1, C) biases and GRN parameters.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

EPS = 1e-6


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a), dtype=torch.float64)


def official_state(canonical: dict[str, np.ndarray], depths: list[int], decoder_depth: int) -> dict[str, np.ndarray]:
    """Our canonical FCMAE weights in the official checkpoint's layout (the inverse of the official
    fine-tuning remap, plus the decoder's official names)."""
    c = {k: np.asarray(v, dtype=np.float64) for k, v in canonical.items()}
    out: dict[str, np.ndarray] = {}
    e, t = "encoder.", "convnextv2."

    def me_kernel(w):  # dense (O, I, k, k) -> (k*k, I, O), index x*k + y
        o, i, k, _ = w.shape
        return np.ascontiguousarray(w.transpose(0, 1, 3, 2).reshape(o, i, k * k).transpose(2, 1, 0))

    def me_depthwise(w):  # dense (C, 1, k, k) -> (k*k, C)
        ch, _, k, _ = w.shape
        return np.ascontiguousarray(w.transpose(0, 1, 3, 2).reshape(ch, k * k).transpose(1, 0))

    out[e + "downsample_layers.0.0.weight"] = c[t + "embeddings.patch_embeddings.weight"]
    out[e + "downsample_layers.0.0.bias"] = c[t + "embeddings.patch_embeddings.bias"]
    out[e + "downsample_layers.0.1.weight"] = c[t + "embeddings.layernorm.weight"]
    out[e + "downsample_layers.0.1.bias"] = c[t + "embeddings.layernorm.bias"]
    for s, depth in enumerate(depths):
        st = f"{t}encoder.stages.{s}."
        if s > 0:
            out[f"{e}downsample_layers.{s}.0.ln.weight"] = c[st + "downsampling_layer.0.weight"]
            out[f"{e}downsample_layers.{s}.0.ln.bias"] = c[st + "downsampling_layer.0.bias"]
            out[f"{e}downsample_layers.{s}.1.kernel"] = me_kernel(c[st + "downsampling_layer.1.weight"])
            out[f"{e}downsample_layers.{s}.1.bias"] = c[st + "downsampling_layer.1.bias"][None]
        for j in range(depth):
            b, o = f"{st}layers.{j}.", f"{e}stages.{s}.{j}."
            out[o + "dwconv.kernel"] = me_depthwise(c[b + "dwconv.weight"])
            out[o + "dwconv.bias"] = c[b + "dwconv.bias"][None]
            out[o + "norm.ln.weight"] = c[b + "layernorm.weight"]
            out[o + "norm.ln.bias"] = c[b + "layernorm.bias"]
            for n in ("pwconv1", "pwconv2"):
                out[f"{o}{n}.linear.weight"] = c[f"{b}{n}.weight"]
                out[f"{o}{n}.linear.bias"] = c[f"{b}{n}.bias"]
            out[o + "grn.gamma"] = c[b + "grn.weight"].reshape(1, -1)
            out[o + "grn.beta"] = c[b + "grn.bias"].reshape(1, -1)
    out["proj.weight"], out["proj.bias"] = c["decoder.proj.weight"], c["decoder.proj.bias"]
    out["mask_token"] = c["decoder.mask_token"]
    for j in range(decoder_depth):
        b, o = f"decoder.layers.{j}.", f"decoder.{j}."
        for ours, theirs in (("dwconv", "dwconv"), ("layernorm", "norm"), ("pwconv1", "pwconv1"),
                             ("pwconv2", "pwconv2")):
            out[f"{o}{theirs}.weight"] = c[f"{b}{ours}.weight"]
            out[f"{o}{theirs}.bias"] = c[f"{b}{ours}.bias"]
        out[o + "grn.gamma"] = c[b + "grn.weight"].reshape(1, 1, 1, -1)
        out[o + "grn.beta"] = c[b + "grn.bias"].reshape(1, 1, 1, -1)
    out["pred.weight"], out["pred.bias"] = c["decoder.pred.weight"], c["decoder.pred.bias"]
    return out


class _Sparse:
    """A sparse tensor: coordinates (N, 3) of (image, row, column) at one resolution, features (N, C)."""

    def __init__(self, coords: np.ndarray, feats: torch.Tensor):
        self.coords, self.feats = coords, feats
        self.index = {tuple(c): n for n, c in enumerate(coords.tolist())}


def _layer_norm_rows(f, w, b):
    return F.layer_norm(f, (f.shape[-1],), _t(w), _t(b), EPS)


def _depthwise(x: _Sparse, kernel, bias) -> torch.Tensor:
    kernel, k = _t(kernel), int(math.isqrt(np.shape(kernel)[0]))
    out = _t(bias).reshape(1, -1).repeat(len(x.coords), 1)
    half = k // 2
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            w = kernel[(dx + half) * k + (dy + half)]
            src, dst = [], []
            for n, (im, r, c) in enumerate(x.coords.tolist()):
                m = x.index.get((im, r + dy, c + dx))
                if m is not None:
                    src.append(m)
                    dst.append(n)
            if src:
                out.index_add_(0, torch.tensor(dst), x.feats[torch.tensor(src)] * w)
    return out


def _downsample(x: _Sparse, kernel, bias) -> _Sparse:
    kernel = _t(kernel)  # (4, in, out)
    parents = sorted({(im, r // 2, c // 2) for im, r, c in x.coords.tolist()})
    pindex = {p: n for n, p in enumerate(parents)}
    out = _t(bias).reshape(1, -1).repeat(len(parents), 1)
    for n, (im, r, c) in enumerate(x.coords.tolist()):
        dy, dx = r % 2, c % 2
        out[pindex[(im, r // 2, c // 2)]] += x.feats[n] @ kernel[dx * 2 + dy]
    return _Sparse(np.array(parents, dtype=np.int64).reshape(-1, 3), out)


def _sparse_block(x: _Sparse, sd, p) -> _Sparse:
    f = _depthwise(x, sd[p + "dwconv.kernel"], sd[p + "dwconv.bias"])
    f = _layer_norm_rows(f, sd[p + "norm.ln.weight"], sd[p + "norm.ln.bias"])
    f = f @ _t(sd[p + "pwconv1.linear.weight"]).T + _t(sd[p + "pwconv1.linear.bias"])
    f = F.gelu(f)
    g = torch.sqrt((f * f).sum(dim=0, keepdim=True))  # over every row of the batch
    f = _t(sd[p + "grn.gamma"]) * (f * (g / (g.mean(dim=-1, keepdim=True) + EPS))) + _t(sd[p + "grn.beta"]) + f
    f = f @ _t(sd[p + "pwconv2.linear.weight"]).T + _t(sd[p + "pwconv2.linear.bias"])
    return _Sparse(x.coords, x.feats + f)


def _dense_block(x, sd, p):
    ch = x.shape[1]
    y = F.conv2d(x, _t(sd[p + "dwconv.weight"]), _t(sd[p + "dwconv.bias"]), padding=3, groups=ch)
    y = y.permute(0, 2, 3, 1)
    y = F.layer_norm(y, (ch,), _t(sd[p + "norm.weight"]), _t(sd[p + "norm.bias"]), EPS)
    y = F.gelu(y @ _t(sd[p + "pwconv1.weight"]).T + _t(sd[p + "pwconv1.bias"]))
    g = torch.sqrt((y * y).sum(dim=(1, 2), keepdim=True))  # per image: the dense GRN
    y = _t(sd[p + "grn.gamma"]) * (y * (g / (g.mean(dim=-1, keepdim=True) + EPS))) + _t(sd[p + "grn.beta"]) + y
    y = y @ _t(sd[p + "pwconv2.weight"]).T + _t(sd[p + "pwconv2.bias"])
    return x + y.permute(0, 3, 1, 2)


def fcmae_forward(sd: dict[str, np.ndarray], images: np.ndarray, removed: np.ndarray, depths: list[int],
                  decoder_depth: int, norm_pix_loss: bool, patch_size: int = 32):
    """(loss, pred (B, L, p*p*C), encoder output (B, C_last, rows, cols)) of the official FCMAE forward."""
    x = _t(images)
    b, ch, h, w = x.shape
    rows, cols = h // patch_size, w // patch_size
    removed = _t(removed).reshape(b, rows, cols)
    # stem: dense conv + channels-first LayerNorm (the official one: biased variance), then x *= 1 - mask
    stem_w = _t(sd["encoder.downsample_layers.0.0.weight"])
    k = stem_w.shape[-1]
    x = F.conv2d(x, stem_w, _t(sd["encoder.downsample_layers.0.0.bias"]), stride=k)
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + EPS)
    x = _t(sd["encoder.downsample_layers.0.1.weight"])[:, None, None] * x \
        + _t(sd["encoder.downsample_layers.0.1.bias"])[:, None, None]
    scale = x.shape[-1] // cols
    mask = removed.repeat_interleave(scale, 1).repeat_interleave(scale, 2)[:, None]
    x = x * (1.0 - mask)
    # to_sparse: the sites whose features are not all zero
    nz = (x.abs().sum(1) != 0).nonzero().numpy()
    sp = _Sparse(nz, x.permute(0, 2, 3, 1)[tuple(torch.as_tensor(nz).T)])
    for s, depth in enumerate(depths):
        if s > 0:
            f = _layer_norm_rows(sp.feats, sd[f"encoder.downsample_layers.{s}.0.ln.weight"],
                                 sd[f"encoder.downsample_layers.{s}.0.ln.bias"])
            sp = _downsample(_Sparse(sp.coords, f), sd[f"encoder.downsample_layers.{s}.1.kernel"],
                             sd[f"encoder.downsample_layers.{s}.1.bias"])
        for j in range(depth):
            sp = _sparse_block(sp, sd, f"encoder.stages.{s}.{j}.")
    # densify (zeros where no site is)
    enc = torch.zeros(b, sp.feats.shape[1], rows, cols, dtype=torch.float64)
    for n, (im, r, c) in enumerate(sp.coords.tolist()):
        enc[im, :, r, c] = sp.feats[n]
    # the dense decoder
    y = F.conv2d(enc, _t(sd["proj.weight"]), _t(sd["proj.bias"]))
    m = removed[:, None]
    y = y * (1.0 - m) + _t(sd["mask_token"]) * m
    for j in range(decoder_depth):
        y = _dense_block(y, sd, f"decoder.{j}.")
    pred = F.conv2d(y, _t(sd["pred.weight"]), _t(sd["pred.bias"]))
    pred = pred.reshape(b, pred.shape[1], -1).permute(0, 2, 1)
    # the loss
    p = patch_size
    target = _t(images).reshape(b, ch, rows, p, cols, p)
    target = torch.einsum("nchpwq->nhwpqc", target).reshape(b, rows * cols, p * p * ch)
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    loss = ((pred - target) ** 2).mean(dim=-1)
    mask_flat = removed.reshape(b, -1)
    loss = (loss * mask_flat).sum() / mask_flat.sum()
    return float(loss), pred.numpy(), enc.numpy()
