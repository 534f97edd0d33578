#!/usr/bin/env python3
"""Convert a ConvNeXt checkpoint into a hub-layout folder that both twins and transformers load.

    python tools/convert_weights.py INPUT OUTPUT_DIR [--from hf|timm|official|torchvision|keras]
        [--to pt|tf|all] [--config FILE] [--overwrite] [--verify] [--quiet] [--debug]

The command line lives in convnext_app.convert (shared with `convnext convert`).
"""

import sys
from pathlib import Path

# Run from a checkout without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from convnext_app.convert import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
