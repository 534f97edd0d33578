"""Property tests (hypothesis): the image processor's output contract, the config round trip, and
the checkpoint name maps being bijections.

Example counts are kept small so that the file belongs to the quick suite.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from convnext_common.config import SUPPORTED_ACTIVATIONS, ConvNextConfig, ConvNextV2Config

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- image processor ---------------------------------------------------------------------------------
PIL_MODES = ("RGB", "L", "RGBA", "LA", "P", "CMYK", "I;16", "I", "F", "1")


@st.composite
def images(draw):
    """One image: a PIL image of any common mode, or a numpy array (HW, HWC, CHW) of a dtype the
    processor documents, with values in its documented ranges."""
    from PIL import Image

    h = draw(st.integers(1, 64))
    w = draw(st.integers(1, 64))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["pil", "uint8", "float01", "float-int-valued", "uint16-small", "bool"]))
    if kind == "pil":
        mode = draw(st.sampled_from(PIL_MODES))
        base = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        if mode in ("I;16", "I"):
            return Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint16)).convert(mode) \
                if mode == "I" else Image.fromarray(rng.integers(0, 256, (h, w)).astype(np.uint16))
        if mode == "F":
            return Image.fromarray(rng.random((h, w)).astype(np.float32))
        return base.convert(mode)
    layout = draw(st.sampled_from(["hwc", "chw", "hw"]))
    channels = draw(st.sampled_from([1, 3]))
    shape = {"hwc": (h, w, channels), "chw": (channels, h, w), "hw": (h, w)}[layout]
    if kind == "uint8":
        arr = rng.integers(0, 256, shape, dtype=np.uint8)
    elif kind == "float01":
        arr = rng.random(shape).astype(draw(st.sampled_from([np.float16, np.float32, np.float64])))
    elif kind == "float-int-valued":
        arr = rng.integers(0, 256, shape).astype(np.float32)
    elif kind == "uint16-small":
        arr = rng.integers(0, 256, shape).astype(np.uint16)
    else:
        arr = rng.random(shape) > 0.5
    # a (1|3, H, W) array whose H is also 1 or 3 is ambiguous; say which layout it is
    return arr, ("channels_first" if layout == "chw" else "channels_last" if layout == "hwc" else None)


def _processor_settings():
    return st.fixed_dictionaries({
        "size": st.sampled_from([8, 16, 32, 33, 64, 384]).map(lambda s: {"shortest_edge": s}),
        "crop_pct": st.floats(0.5, 1.5),
        "resample": st.sampled_from([0, 1, 2, 3, 4, 5]),
        "do_resize": st.booleans(),
        "do_rescale": st.booleans(),
        "do_normalize": st.booleans(),
        "data_format": st.sampled_from(["channels_first", "channels_last"]),
        "image_mean": st.lists(st.floats(0.0, 1.0), min_size=3, max_size=3),
        "image_std": st.lists(st.floats(0.05, 2.0), min_size=3, max_size=3),
    })


def _size_of(item) -> tuple[int, int]:
    if isinstance(item, tuple):
        arr, fmt = item
        if arr.ndim == 2:
            return arr.shape
        return arr.shape[1:] if fmt == "channels_first" else arr.shape[:2]
    return item.size[1], item.size[0]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.lists(images(), min_size=1, max_size=3), options=_processor_settings())
def test_image_processor_output_contract(batch, options):
    """Documented: (N, 3, s, s) (or (N, s, s, 3)) when resizing; (3, H, W) per image otherwise;
    finite; float32 when rescaling or normalising; within the range the affine map allows."""
    from convnext_common.processing import ConvNextImageProcessor

    processor = ConvNextImageProcessor(**options)
    formats = {fmt for item in batch if isinstance(item, tuple) for fmt in [item[1]]}
    assume(len(formats - {None}) <= 1)  # one input_data_format per call
    fmt = next(iter(formats - {None}), None)
    inputs = [item[0] if isinstance(item, tuple) else item for item in batch]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "already rescaled" hints for [0, 1] floats, PIL palette notes
        out = processor(inputs, input_data_format=fmt).pixel_values
    assert len(out) == len(batch)
    s = options["size"]["shortest_edge"]
    first = options["data_format"] == "channels_first"
    for item, result in zip(batch, out):
        result = np.asarray(result)
        h, w = (s, s) if options["do_resize"] else _size_of(item)
        assert result.shape == ((3, h, w) if first else (h, w, 3))
        assert np.isfinite(result).all()
        if options["do_rescale"] or options["do_normalize"]:
            assert result.dtype == np.float32
        # every input value lies in [0, 255] (uint8 scale) or [0, 1] (float scale): bounded output
        top = 255.0 * (1 / 255 if options["do_rescale"] else 1.0)
        mean = np.asarray(options["image_mean"]) if options["do_normalize"] else np.zeros(3)
        std = np.asarray(options["image_std"]) if options["do_normalize"] else np.ones(3)
        lo, hi = ((0 - mean) / std).min(), ((top - mean) / std).max()
        values = result.astype(np.float64)
        tol = 1e-4 * max(1.0, abs(lo), abs(hi))
        assert values.min() >= lo - tol and values.max() <= hi + tol


# --- config round trip -------------------------------------------------------------------------------
@st.composite
def configs(draw):
    v2 = draw(st.booleans())
    n = draw(st.integers(1, 5))
    depths = draw(st.lists(st.integers(1, 30), min_size=n, max_size=n))
    hidden = draw(st.lists(st.integers(1, 4096), min_size=n, max_size=n))
    stage_names = ["stem"] + [f"stage{i}" for i in range(1, n + 1)]
    out_features = draw(st.one_of(st.none(), st.lists(st.sampled_from(stage_names), min_size=1, unique=True)
                                  .map(lambda fs: sorted(fs, key=stage_names.index))))
    labels = draw(st.one_of(st.none(), st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=20,
                                                unique=True)))
    kwargs = dict(
        depths=depths, hidden_sizes=hidden, num_stages=n,
        num_channels=draw(st.integers(1, 8)), patch_size=draw(st.integers(1, 8)),
        hidden_act=draw(st.sampled_from(SUPPORTED_ACTIVATIONS)),
        initializer_range=draw(st.floats(1e-4, 1.0)),
        layer_norm_eps=draw(st.floats(1e-12, 1e-3)),
        drop_path_rate=draw(st.floats(0.0, 0.99)),
        image_size=draw(st.integers(1, 1024)),
        out_features=out_features,
        problem_type=draw(st.sampled_from([None, "regression", "single_label_classification",
                                           "multi_label_classification"])),
        architectures=draw(st.one_of(st.none(), st.just(["ConvNextForImageClassification"]))),
        # keys this library does not know are kept and written back
        transformers_version=draw(st.sampled_from(["4.57.6", "5.0.0"])),
        custom_note=draw(st.one_of(st.none(), st.text(max_size=20), st.lists(st.integers(), max_size=3))),
    )
    if labels is not None:
        kwargs["id2label"] = dict(enumerate(labels))
    else:
        kwargs["num_labels"] = draw(st.integers(0, 50))
    if not v2:
        kwargs["layer_scale_init_value"] = draw(st.sampled_from([0.0, 1e-6, 0.5, -1.0]))
    return (ConvNextV2Config if v2 else ConvNextConfig)(**kwargs)


@FAST
@given(config=configs())
def test_config_round_trips_through_dict_and_json(config):
    cls = type(config)
    d = config.to_dict()
    again = cls.from_dict(d)
    assert again == config and again.to_dict() == d
    from_json = cls.from_dict(json.loads(config.to_json_string()))
    assert from_json == config
    assert from_json.num_labels == config.num_labels and from_json.out_indices == config.out_indices
    assert from_json.custom_note == config.custom_note


# --- checkpoint name maps ----------------------------------------------------------------------------
def foreign_names(fmt: str, depths: list[int], v2: bool, head: bool) -> list[str]:
    """The tensor names each library's ConvNeXt has (written from the libraries' module layouts,
    independently of the sources' rules in convnext_common.checkpoints.sources)."""
    wb = ("weight", "bias")
    names: list[str] = []
    if fmt == "timm":
        names += [f"stem.{i}.{p}" for i in (0, 1) for p in wb]
        for s, depth in enumerate(depths):
            if s:
                names += [f"stages.{s}.downsample.{i}.{p}" for i in (0, 1) for p in wb]
            for j in range(depth):
                b = f"stages.{s}.blocks.{j}."
                names += [b + f"{m}.{p}" for m in ("conv_dw", "norm", "mlp.fc1", "mlp.fc2") for p in wb]
                names += [b + "mlp.grn.weight", b + "mlp.grn.bias"] if v2 else [b + "gamma"]
        names += [f"head.norm.{p}" for p in wb] + ([f"head.fc.{p}" for p in wb] if head else [])
    elif fmt == "official":
        names += [f"downsample_layers.0.{i}.{p}" for i in (0, 1) for p in wb]
        for s, depth in enumerate(depths):
            if s:
                names += [f"downsample_layers.{s}.{i}.{p}" for i in (0, 1) for p in wb]
            for j in range(depth):
                b = f"stages.{s}.{j}."
                names += [b + f"{m}.{p}" for m in ("dwconv", "norm", "pwconv1", "pwconv2") for p in wb]
                names += [b + "grn.gamma", b + "grn.beta"] if v2 else [b + "gamma"]
        names += [f"norm.{p}" for p in wb] + ([f"head.{p}" for p in wb] if head else [])
    elif fmt == "torchvision":
        names += [f"features.0.{i}.{p}" for i in (0, 1) for p in wb]
        for s, depth in enumerate(depths):
            if s:
                names += [f"features.{2 * s}.{i}.{p}" for i in (0, 1) for p in wb]
            for j in range(depth):
                b = f"features.{2 * s + 1}.{j}."
                names += [b + f"block.{i}.{p}" for i in (0, 2, 3, 5) for p in wb] + [b + "layer_scale"]
        names += [f"classifier.0.{p}" for p in wb] + ([f"classifier.2.{p}" for p in wb] if head else [])
    elif fmt == "keras":
        names += ["stem_conv/kernel", "stem_conv/bias", "stem_layernorm/gamma", "stem_layernorm/beta"]
        for s, depth in enumerate(depths):
            if s:
                names += [f"downsampling_layernorm_{s - 1}/{v}" for v in ("gamma", "beta")]
                names += [f"downsampling_conv_{s - 1}/{v}" for v in ("kernel", "bias")]
            for j in range(depth):
                b = f"stage_{s}_block_{j}_"
                names += [b + f"{m}/{v}" for m in ("depthwise_conv", "pointwise_conv_1", "pointwise_conv_2")
                          for v in ("kernel", "bias")]
                names += [b + f"layernorm/{v}" for v in ("gamma", "beta")] + [b + "layer_scale/gamma"]
        names += ["head_layernorm/gamma", "head_layernorm/beta"] + (["head_dense/kernel", "head_dense/bias"]
                                                                    if head else [])
    else:
        raise KeyError(fmt)
    return names


#: formats and the model families they publish (torchvision and keras-applications have no V2)
FORMAT_VERSIONS = {"timm": (1, 2), "official": (1, 2), "torchvision": (1,), "keras": (1,)}


def _check_bijection(fmt: str, depths: list[int], v2: bool, head: bool) -> None:
    from convnext_common.checkpoints.pipeline import canonical_name
    from convnext_common.checkpoints.canonical import expected_shapes

    n = len(depths)
    config = (ConvNextV2Config if v2 else ConvNextConfig)(depths=depths, hidden_sizes=[8 * 2**i for i in range(n)],
                                                          num_stages=n, num_labels=5)
    trunk = ("convnextv2." if v2 else "convnext.") if head else ""
    source = foreign_names(fmt, depths, v2, head)
    mapped = {}
    for name in source:
        target = canonical_name(name, fmt, trunk)
        assert target is not None, f"{fmt}: no rule for {name}"
        mapped[name] = target[0]
    targets = list(mapped.values())
    assert len(set(targets)) == len(targets), f"{fmt}: two source names map to one canonical name"
    assert set(targets) == set(expected_shapes(config, "classification" if head else "base")), \
        f"{fmt}: the image of the map is not the model's set of tensors"


def _variant_cases():
    from convnext_common.variants import V1_VARIANTS, V2_VARIANTS

    for fmt, versions in FORMAT_VERSIONS.items():
        for version in versions:
            for size, variant in (V1_VARIANTS if version == 1 else V2_VARIANTS).items():
                yield pytest.param(fmt, list(variant.depths), version == 2, id=f"{fmt}-v{version}-{size}")


@pytest.mark.parametrize("fmt, depths, v2", list(_variant_cases()))
def test_foreign_name_map_is_a_bijection_on_every_variant(fmt, depths, v2):
    for head in (True, False):
        _check_bijection(fmt, depths, v2, head)


@FAST
@given(fmt=st.sampled_from(sorted(FORMAT_VERSIONS)), depths=st.lists(st.integers(1, 40), min_size=1, max_size=6),
       v2=st.booleans(), head=st.booleans())
def test_foreign_name_map_is_a_bijection_on_any_depths(fmt, depths, v2, head):
    """Beyond the published sizes: more stages (torchvision's feature indices reach two digits) and
    deeper stages."""
    assume(2 in FORMAT_VERSIONS[fmt] or not v2)
    _check_bijection(fmt, depths, v2, head)


@FAST
@given(depths=st.lists(st.integers(1, 40), min_size=1, max_size=6), v2=st.booleans(),
       head=st.sampled_from(["classification", "base", "backbone"]))
def test_tf_h5_name_map_round_trips(depths, v2, head):
    """Canonical name -> transformers' TF variable path -> canonical name is the identity, and no two
    canonical names share a TF path."""
    from convnext_common.checkpoints.formats.tf_h5 import canonical_to_tf, tf_name_to_canonical
    from convnext_common.checkpoints.canonical import expected_shapes

    n = len(depths)
    config = (ConvNextV2Config if v2 else ConvNextConfig)(
        depths=depths, hidden_sizes=[8] * n, num_stages=n, num_labels=3,
        out_features=[f"stage{i}" for i in range(1, n + 1)])
    shapes = expected_shapes(config, head)
    paths = {}
    for name, shape in shapes.items():
        tf_path, _ = canonical_to_tf(name, np.zeros(shape, np.float32))
        assert tf_name_to_canonical(tf_path)[0] == name
        paths[tf_path] = name
    assert len(paths) == len(shapes)
