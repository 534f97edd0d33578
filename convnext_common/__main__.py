"""``python -m convnext_common`` still runs the ``convnext`` command, which lives in the application
package (``python -m convnext_app``); kept so that existing scripts keep working."""

import runpy

if __name__ == "__main__":
    runpy.run_module("convnext_app", run_name="__main__", alter_sys=True)
