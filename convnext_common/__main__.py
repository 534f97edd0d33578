"""``python -m convnext_common ...`` is the ``convnext`` command."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
