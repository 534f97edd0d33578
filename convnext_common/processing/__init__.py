"""ConvNeXt image preprocessing with PIL and numpy: transformers' ``ConvNextImageProcessor``, faster.

This package is the core's: it imports no deep-learning framework. Tensors given as input are read
through the array protocols (``inputs``); ``return_tensors`` other than "np" is converted by the
function a package registered for that name (``convnext_common.tensor_types``).

What happens to each image (the semantics of transformers' slow ``ConvNextImageProcessor``):

1. **To RGB.** A PIL image in any mode is converted with ``Image.convert("RGB")`` (``L`` is kept
   as one channel and repeated at the end, which gives the same numbers). Alpha is *dropped*, not
   composited: the colour channels of an RGBA/LA/P-with-transparency image are used as they are,
   exactly as ``image.convert("RGB")`` does, which is what transformers' users feed it. Composite
   onto a background yourself first if transparent areas matter. Arrays and tensors may be HW,
   HWC or CHW, and a 4-D array or tensor is a batch. The channel axis is inferred as transformers
   does (1 or 3 entries first, else last) or given by ``input_data_format``, which admits any
   channel count: a C-channel array gives C output channels (a grayscale one gives three), and
   ``image_mean`` / ``image_std`` must then hold one value per channel or be a single number.
   Arrays of 2 or 4 channels are resized as PIL's ``LA`` / ``RGBA`` images, which is what
   transformers does (PIL weights colour by the last channel, as alpha, while resampling); other
   channel counts are resized channel by channel with the same filter.
2. **Resize** (``do_resize``), through PIL exactly as transformers does, so results agree to the
   last bit: if ``size["shortest_edge"] < 384`` the short side goes to
   ``int(shortest_edge / crop_pct)`` (the long side as transformers' ``get_resize_output_image_size``
   computes it), then a centre crop of ``shortest_edge`` x ``shortest_edge`` (zero padded when the
   resized image is smaller, as transformers' ``center_crop`` does); otherwise the image is warped
   to ``shortest_edge`` x ``shortest_edge``. PIL resizes uint8 data, so a non-uint8 array is first
   converted as transformers converts it: integer-valued data in [0, 255] is cast to uint8; float
   data in [0, 1] is multiplied by 255 and truncated, and the resized result divided by 255 again
   (so a [0, 1] float image that is also rescaled by ``rescale_factor`` ends up ~255x too small,
   as in transformers: such inputs trigger a warning, pass ``do_rescale=False`` for them). Other
   ranges are refused.
3. **Rescale and normalise** (``do_rescale``, ``do_normalize``): ``(x * rescale_factor - mean) / std``,
   in one pass through a per-channel table of the 256 possible uint8 values, each computed with
   transformers' float32 operations, so the output equals transformers' bit for bit.
4. **Layout**: ``data_format`` ``"channels_first"`` (C, H, W, the default) or ``"channels_last"``.

The data stay uint8 until the single table lookup; the resize asks PIL for the kept pixels only
(``pil_resize``), and a batch is spread over a thread pool (PIL releases the GIL while resizing).
JPEG draft decoding is not used: it changes the pixels.

Modules, one job each: ``options`` (names, checks, one call's options), ``geometry`` (output size
and crop), ``inputs`` (anything -> single RGB arrays), ``resampling`` (PIL's arithmetic, shared
with the batched tensor processor), ``pil_resize`` (resize + crop through PIL), ``threads``, ``output``
(rescale/normalise tables, batching, ``BatchFeature``) and ``processor`` (the class).
"""

from .options import PREPROCESSOR_CONFIG_NAME
from .output import BatchFeature
from .processor import ConvNextFeatureExtractor, ConvNextImageProcessor

# The public API. The helpers of the submodules are imported from the submodule that defines them.
__all__ = ["ConvNextImageProcessor", "ConvNextFeatureExtractor", "BatchFeature", "PREPROCESSOR_CONFIG_NAME"]
