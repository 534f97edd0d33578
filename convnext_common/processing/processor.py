"""The PIL processor: transformers' ``ConvNextImageProcessor`` (its options, its config files, its numbers)."""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from ..constants import IMAGENET_STANDARD_MEAN, IMAGENET_STANDARD_STD
from ..fileio import atomic_write_text, read_json_file
from .geometry import size_plan
from .inputs import (
    PRESCALED_WARNING, channel_layout, check_finite, check_pil_size, flatten_images, image_channels, pil_to_rgb,
    to_hwc, to_uint8_for_pil,
)
from .options import (
    CALL_OPTION_NAMES, CHANNELS_FIRST, DEFAULT_CROP_PCT, OPTION_NAMES, PREPROCESSOR_CONFIG_NAME, ProcessorOptions,
    validate_options,
)
from .output import BatchFeature, batch_as, write_output
from .pil_resize import resize_and_crop
from .threads import default_threads, thread_pool

_CONFIG_TYPES = ("ConvNextImageProcessor", "ConvNextImageProcessorFast", "ConvNextFeatureExtractor")
#: transformers' processor of the DINOv3 hub repos (ConvNeXt and ViT): a resize to ``size``'s height
#: and width, no crop, then rescale and normalise; read as this processor with that ``size``, and
#: written under its own name, since transformers' ConvNeXt processors cannot read such a ``size``.
FIXED_SIZE_TYPES = ("DINOv3ViTImageProcessorFast", "DINOv3ViTImageProcessor")


class ConvNextImageProcessor:
    """transformers' ``ConvNextImageProcessor`` with PIL and numpy only
    (:mod:`convnext_common.processing` describes the steps).

    Args (the keys of preprocessor_config.json; each can be overridden per call):
        do_resize: resize (and crop) as described above. Default True.
        size: ``{"shortest_edge": n}`` or a bare int (old configs). Default ``{"shortest_edge": 384}``.
        crop_pct: short side is resized to ``int(shortest_edge / crop_pct)`` before the crop when
            ``shortest_edge < 384``. Default 224 / 256. Must be > 0 (> 1 pads the crop).
        resample: PIL filter number (``PIL.Image.Resampling``) or name. Default 3 (bicubic, as the
            hub configs and transformers 5 use; transformers 4 defaults to bilinear).
        do_rescale, rescale_factor: multiply by ``rescale_factor`` (default 1/255).
        do_normalize, image_mean, image_std: ``(x - mean) / std`` per channel. Defaults are
            transformers' ``IMAGENET_STANDARD_*`` = 0.5; the hub's ConvNeXt configs use the ImageNet
            statistics ``IMAGENET_DEFAULT_*``.
        data_format: ``"channels_first"`` (default) or ``"channels_last"`` output.
        num_threads: threads for a batch (not saved; default: usable CPUs, at most 8).
    Unknown keyword arguments (other keys of a loaded config) are kept and saved back.
    """

    model_input_names = ["pixel_values"]
    config_type_name = "ConvNextImageProcessor"

    def __init__(
        self,
        do_resize: bool = True,
        size: dict | int | None = None,
        crop_pct: float | None = None,
        resample: int = 3,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        data_format: str = CHANNELS_FIRST,
        num_threads: int | None = None,
        **kwargs: Any,
    ) -> None:
        self.do_resize = do_resize
        self.size = {"shortest_edge": 384} if size is None else size
        self.crop_pct = DEFAULT_CROP_PCT if crop_pct is None else crop_pct
        self.resample = resample
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        # statistics given as one number apply to any channel count, as in transformers (see _options)
        self._stat_numbers = {name: float(v) for name, v in (("image_mean", image_mean), ("image_std", image_std))
                              if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)}
        self.image_mean = list(IMAGENET_STANDARD_MEAN) if image_mean is None else image_mean
        self.image_std = list(IMAGENET_STANDARD_STD) if image_std is None else image_std
        self.data_format = data_format
        if num_threads is not None and (isinstance(num_threads, bool) or not isinstance(num_threads, int)
                                        or num_threads < 1):
            raise ValueError(f"num_threads must be a positive int or None, got {num_threads!r}")
        self.num_threads = num_threads
        kwargs.pop("image_processor_type", None)  # always written as our own type
        processor_class = kwargs.pop("processor_class", None)  # the file's spelling of the next key
        kwargs.setdefault("_processor_class", processor_class)
        self.extra: dict[str, Any] = kwargs
        opts = self._options({})  # validate now: a bad config fails at load time, naming the field
        self.size, self.crop_pct, self.resample = opts.size, opts.crop_pct, opts.resample
        # a number is stored as three values (what the saved file and code reading these attributes
        # expect of an RGB processor); it still applies to any channel count (_stat_numbers)
        self.image_mean, self.image_std = [_rgb_stat(v) for v in (opts.image_mean, opts.image_std)]
        self.data_format = opts.data_format

    # ---- options ----------------------------------------------------------------------------------
    def _options(self, overrides: dict[str, Any]) -> ProcessorOptions:
        unknown = set(overrides) - set(OPTION_NAMES) - set(CALL_OPTION_NAMES) - set(self._extra_call_options)
        if unknown:
            warnings.warn(f"{type(self).__name__}: ignoring unknown argument(s) {sorted(unknown)}", stacklevel=3)
        raw = {name: getattr(self, name) for name in OPTION_NAMES}
        raw.update(self._given_numbers())
        raw["data_format"] = self.data_format
        for name in OPTION_NAMES + CALL_OPTION_NAMES:
            if overrides.get(name) is not None:
                raw[name] = overrides[name]
        if "crop_pct" in overrides and overrides["crop_pct"] is None:
            raw["crop_pct"] = self.crop_pct
        return validate_options(**raw)

    _extra_call_options: tuple[str, ...] = ()

    def _given_numbers(self) -> dict[str, float]:
        """The statistics given as one number and stored as three values since (unless reassigned)."""
        numbers = {}
        for name, number in self.__dict__.get("_stat_numbers", {}).items():
            value = getattr(self, name)
            if not isinstance(value, (int, float)) and list(value) == [number] * 3:
                numbers[name] = number
        return numbers

    # ---- the work ---------------------------------------------------------------------------------
    def __call__(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, **kwargs)

    def preprocess(self, images: Any, **kwargs: Any) -> BatchFeature:
        """Process one image or a batch; keyword arguments override the stored options for this call.

        Returns a BatchFeature with ``pixel_values``: a list of (3, H, W) float32 arrays, or with
        ``return_tensors`` ("np", "pt", "tf") one (N, 3, H, W) array/tensor (H = W = shortest_edge
        when resizing). ``return_tensors`` needs all images of one size (always true when resizing).
        """
        opts = self._options(kwargs)
        items = flatten_images(images)
        self._warn_if_prescaled(items, opts)
        n = len(items)
        channels = {self._output_channels(x, opts, f"images[{i}]" if n > 1 else "image") for i, x in enumerate(items)}
        out = None
        if opts.do_resize and (opts.do_rescale or opts.do_normalize) and len(channels) == 1:
            c = channels.pop()  # one size, one channel count, float32: one buffer
            sh, sw = opts.output_size
            shape = (n, c, sh, sw) if opts.data_format == CHANNELS_FIRST else (n, sh, sw, c)
            out = np.empty(shape, dtype=np.float32)

        def work(i: int) -> np.ndarray:
            return self._process_one(items[i], f"images[{i}]" if n > 1 else "image", opts,
                                     None if out is None else out[i])

        threads = min(self.num_threads or default_threads(), n)
        results = list(thread_pool(threads).map(work, range(n))) if threads > 1 else [work(i) for i in range(n)]
        if out is not None:
            results = list(out)
        return BatchFeature({"pixel_values": batch_as(results, opts.return_tensors, out)})

    @staticmethod
    def _output_channels(image: Any, opts: ProcessorOptions, where: str) -> int:
        """The result's channel count for one image (a PIL image is read as RGB or L)."""
        if isinstance(image, Image.Image):
            return 3
        layout = channel_layout(image.shape, opts.input_data_format, where)
        return opts.output_channels(image_channels(image.shape, layout), where)

    @staticmethod
    def _warn_if_prescaled(items: list, opts: ProcessorOptions) -> None:
        # transformers' is_scaled_image check on the first image
        first = items[0]
        if opts.do_rescale and isinstance(first, np.ndarray) and first.dtype != np.uint8 and first.size:
            if first.dtype.kind == "f" and np.isfinite(first).all() and first.min() >= 0 and first.max() <= 1:
                warnings.warn(PRESCALED_WARNING, UserWarning, stacklevel=4)

    def _process_one(self, image: Any, where: str, opts: ProcessorOptions, out: np.ndarray | None) -> np.ndarray:
        """One image -> its (C, H, W) (or (H, W, C)) result, written into ``out`` when given."""
        if isinstance(image, Image.Image):
            pil = pil_to_rgb(image)
            check_pil_size(pil, where)
            arr = None
            value_scale = 1.0
        else:
            arr = to_hwc(image, opts.input_data_format, where)
            pil = None
            if opts.do_resize:
                arr, value_scale = to_uint8_for_pil(arr, where)
                if arr.shape[2] <= 4:  # L, LA, RGB, RGBA: as transformers' to_pil_image makes them
                    pil = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
            else:
                check_finite(arr, where)
                value_scale = 1.0
        if opts.do_resize:
            h, w = (pil.size[1], pil.size[0]) if pil is not None else arr.shape[:2]
            out_h, out_w, crop = size_plan(h, w, opts.size, opts.crop_pct)
            if pil is not None:
                region = resize_and_crop(pil, out_h, out_w, crop, opts.resample)
            else:  # more channels than a PIL mode holds: each one as its own L image, same filter
                region = np.concatenate([resize_and_crop(Image.fromarray(np.ascontiguousarray(arr[:, :, c])),
                                                         out_h, out_w, crop, opts.resample)
                                         for c in range(arr.shape[2])], axis=2)
            size = opts.output_size
        else:
            region = np.asarray(pil) if arr is None else arr
            if region.ndim == 2:
                region = region[:, :, None]
            crop = None
            size = region.shape[:2]
        return write_output(region, crop, size, opts, value_scale, out)

    # ---- config files -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The preprocessor_config.json content (transformers' keys and layout)."""
        d = copy.deepcopy(self.extra)
        d.update(
            crop_pct=self.crop_pct, do_normalize=self.do_normalize, do_rescale=self.do_rescale,
            do_resize=self.do_resize, image_mean=list(self.image_mean), image_processor_type=self.config_type_name,
            image_std=list(self.image_std), resample=self.resample, rescale_factor=self.rescale_factor,
            size=dict(self.size),
        )
        d.update(self._given_numbers())  # a number stays a number in the file, as transformers writes it
        if self.data_format != CHANNELS_FIRST:
            d["data_format"] = self.data_format
        if "height" in self.size:  # transformers' ConvNeXt processors read only shortest_edge
            d["image_processor_type"] = FIXED_SIZE_TYPES[0]
            d.pop("crop_pct")
        d.setdefault("_processor_class", None)  # transformers' slot for the processor that owns this one
        return dict(sorted(d.items()))

    def to_json_string(self) -> str:
        """The JSON file's text: ``to_dict`` with ``_processor_class`` written as ``processor_class``
        when set, as transformers writes it."""
        d = self.to_dict()
        processor_class = d.pop("_processor_class", None)
        if processor_class is not None:
            d["processor_class"] = processor_class
        return json.dumps(d, indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike) -> None:
        atomic_write_text(Path(json_file_path), self.to_json_string())

    #: transformers' flag: the batched ("fast") processor says True
    is_fast = False

    @classmethod
    def from_dict(cls, config: dict[str, Any], **kwargs: Any) -> "ConvNextImageProcessor":
        if not isinstance(config, dict):
            raise ValueError(f"an image processor config must be a JSON object, got {type(config).__name__}")
        config = copy.deepcopy(config)
        config.update(kwargs)
        kind = config.get("image_processor_type") or config.get("feature_extractor_type")
        if kind is not None and kind not in _CONFIG_TYPES + FIXED_SIZE_TYPES:
            warnings.warn(f"loading a {kind} config into {cls.__name__}: only its ConvNeXt options are used",
                          stacklevel=3)
        if kind in FIXED_SIZE_TYPES and (config.get("do_center_crop") or config.get("do_pad")):
            raise ValueError(f"{kind} with do_center_crop or do_pad is not reproduced (this processor resizes to "
                             f"size and does not crop or pad afterwards)")
        if config.get("data_format") is None:
            config.pop("data_format", None)
        return cls(**config)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike, **kwargs: Any) -> "ConvNextImageProcessor":
        path = Path(path)
        config = read_json_file(path, "preprocessor config file")
        try:
            return cls.from_dict(config, **kwargs)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, **kwargs: Any) -> "ConvNextImageProcessor":
        """Read preprocessor_config.json from a folder, the file itself, or a hub id.

        Keyword arguments override the file's values. Legacy files (``feature_extractor_type``,
        a bare-int ``size``) are read too. ``revision``, ``cache_dir``, ``local_files_only`` and
        ``token`` are passed to the hub as in transformers. A timm folder or hub id (no
        preprocessor_config.json) gives the settings of timm's evaluation transform.
        """
        from ..hub import HubOptions
        from ..pretrained import preprocessor_source

        source = preprocessor_source(path, HubOptions.pop_from(kwargs))
        if isinstance(source, dict):
            return cls.from_dict(source, **kwargs)
        return cls.from_json_file(source, **kwargs)

    def save_pretrained(self, directory: str | os.PathLike, push_to_hub: bool = False, **kwargs: Any) -> list[str]:
        """Write ``directory/preprocessor_config.json`` (atomically); returns ``[its path]`` as
        transformers does. ``push_to_hub`` is refused."""
        if push_to_hub:
            raise ValueError("push_to_hub is not supported: save to a folder and upload it")
        directory = Path(directory)
        if directory.is_file():
            raise AssertionError(f"Provided path ({directory}) should be a directory, not a file")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PREPROCESSOR_CONFIG_NAME
        atomic_write_text(path, self.to_json_string())
        return [str(path)]

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConvNextImageProcessor) and self.to_dict() == other.to_dict()

    def __getattr__(self, name: str) -> Any:
        extra = self.__dict__.get("extra", {})
        if name == "processor_class":
            name = "_processor_class"
        if name in extra:  # unknown config keys read back as attributes, as in transformers
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")




def _rgb_stat(values: tuple) -> list:
    return list(values) * 3 if len(values) == 1 else list(values)


class ConvNextFeatureExtractor(ConvNextImageProcessor):
    """Deprecated name of :class:`ConvNextImageProcessor` (as in transformers); warns on construction."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        warnings.warn("ConvNextFeatureExtractor is deprecated; use ConvNextImageProcessor (same arguments, same "
                      "results).", FutureWarning, stacklevel=2)
        super().__init__(*args, **kwargs)
