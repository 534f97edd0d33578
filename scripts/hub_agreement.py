"""Agreement of hub-id loading with the source libraries: both twins, offline from a hub cache built as
in tests/hubcache.py. Usage: python scripts/hub_agreement.py (prints max rel per repo)."""
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # this checkout's packages and the test helpers

import torch  # noqa: E402  (before tensorflow)
import numpy as np  # noqa: E402
import huggingface_hub.constants as c  # noqa: E402
from hubcache import build_cache, FIXTURES, HUB_FIXTURES  # noqa: E402
from conftest import rel_err  # noqa: E402

c.HF_HUB_OFFLINE = True
c.HF_HUB_CACHE = str(build_cache(Path(tempfile.mkdtemp()) / "hub"))
import convnext_pt  # noqa: E402
import convnext_tf  # noqa: E402
from convnext_common import ConvNextImageProcessor  # noqa: E402
from PIL import Image  # noqa: E402

inputs = dict(np.load(FIXTURES / "inputs.npz"))
cases = [("test-org/convnext-hf", "hf-convnext"), ("test-org/convnextv2-hf", "hf-convnextv2"),
         ("timm/convnext_test.fixture", "timm-convnext"), ("timm/convnextv2_test.fixture", "timm-convnextv2")]
for repo, fx in cases:
    ref = np.load(FIXTURES / fx / "expected.npz")
    pt = convnext_pt.AutoModelForImageClassification.from_pretrained(repo)  # V1 or V2 by the repo's config
    tf = convnext_tf.TFAutoModelForImageClassification.from_pretrained(repo)
    r = []
    for k in ("pixel_values", "pixel_values_odd"):
        with torch.no_grad():
            r.append(rel_err(pt(torch.from_numpy(inputs[k])).logits.numpy(), ref[k.replace("pixel_values", "logits")]))
        r.append(rel_err(np.asarray(tf(inputs[k], training=False).logits), ref[k.replace("pixel_values", "logits")]))
    print(f"{repo:32s} max rel PT/TF vs {fx}: {max(r):.2e}")
refs = np.load(HUB_FIXTURES / "expected.npz")
PHOTOS = ["china.jpg", "flower.png"]
pipelines = [("test-org/convnext-hf", "hf_convnext", PHOTOS), ("test-org/convnextv2-hf", "hf_convnextv2", PHOTOS),
             ("timm/convnext_test.fixture", "timm", ["square.png"])]
for repo, key, images in pipelines:
    proc = ConvNextImageProcessor.from_pretrained(repo)
    pt = convnext_pt.AutoModelForImageClassification.from_pretrained(repo)  # V1 or V2 by the repo's config
    tf = convnext_tf.TFAutoModelForImageClassification.from_pretrained(repo)
    r = []
    for im in images:
        path = HUB_FIXTURES / im if im == "square.png" else FIXTURES / "images" / im
        x = proc(Image.open(path), return_tensors="np")["pixel_values"]
        ref = refs[f"{key}_{Path(im).stem}"]
        with torch.no_grad():
            r.append(rel_err(pt(torch.from_numpy(x)).logits.numpy(), ref))
        r.append(rel_err(np.asarray(tf(x, training=False).logits), ref))
    print(f"{repo:32s} image pipeline max rel PT/TF: {max(r):.2e}")
