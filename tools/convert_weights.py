#!/usr/bin/env python3
"""Convert a ConvNeXt checkpoint into a hub-layout folder that both twins and transformers load.

    python tools/convert_weights.py INPUT OUTPUT_DIR [--from hf|timm|official|torchvision|keras]
        [--to pt|tf|all] [--config FILE] [--overwrite] [--verify] [--quiet] [--debug]

The same as `convnext convert` (this runs that command, errors included).
"""

import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convnext_app.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert", *sys.argv[1:]]))
