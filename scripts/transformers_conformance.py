"""Run transformers' own ConvNeXT / ConvNeXTV2 test files against this project's classes.

A development-time check, not part of the test suite. It

1. downloads transformers' source distribution from PyPI (``pip download --no-binary``); its
   ``tests/`` holds the shared mixins (test_modeling_common.py, test_configuration_common.py,
   test_backbone_common.py, test_image_processing_common.py, test_pipeline_mixin.py) but not the
   per-model files;
2. takes the per-model files (tests/models/convnext*/test_*.py) and the repository-only modules
   the mixins import (tests/utils/test_configuration_utils.py, tests/utils/tiny_model_summary.json,
   tests/generation/test_utils.py, tests/pipelines/*.py) from ``--tests-from`` (a transformers
   checkout at the same release) or else from GitHub's archive of the release tag; the
   checkout's ``src/transformers`` (read by test_pipeline_mixin) is the installed package;
3. copies both into a temporary folder, rewriting only the ``from transformers import ...`` lines
   of the per-model files so that the ConvNeXt names come from ``convnext_pt`` / ``convnext_tf`` /
   ``convnext_common`` (everything else, the harness included, stays transformers');
4. runs each file offline with pytest in ``--python`` (a venv with transformers and pytest, e.g.
   ``python -m venv /tmp/venv-hf457 && /tmp/venv-hf457/bin/pip install torch==2.13.0
   "transformers==4.57.*" pytest parameterized timeout-decorator pillow`` and this project
   installed there with ``pip install -e . --no-deps``, which declares its tensor types), and
   prints pass / fail / skip counts per file.

Nothing of transformers' files is kept: the temporary folder is removed at the end (``--keep`` to
look at it). ``--stand-ins`` fills in the repository-only modules a partial checkout lacks (the
``tests/pipelines`` modules test_pipeline_mixin imports, as empty classes, and an empty
tiny_model_summary.json), so the per-model files import; their pipeline tests then do not run.

The TensorFlow files need a release whose source distribution still ships
tests/test_modeling_tf_common.py (4.46.3 does, 4.57 does not) and a venv with TensorFlow and
tf-keras (docs/compat.md gives the commands). Usage::

    python scripts/transformers_conformance.py --python /tmp/venv-hf457/bin/python \
        [--version 4.57.6] [--tests-from ~/src/transformers] [--stand-ins] [-k test_config]
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: per-model test files, as transformers' repository lays them out
MODEL_TEST_FILES = (
    "tests/models/convnext/test_modeling_convnext.py",
    "tests/models/convnextv2/test_modeling_convnextv2.py",
    "tests/models/convnext/test_image_processing_convnext.py",
    "tests/models/convnext/test_modeling_tf_convnext.py",
    "tests/models/convnextv2/test_modeling_tf_convnextv2.py",
)

#: where each transformers name comes from here
OUR_NAMES = {
    "convnext_pt": ("ConvNextConfig", "ConvNextV2Config", "ConvNextModel", "ConvNextForImageClassification",
                    "ConvNextBackbone", "ConvNextPreTrainedModel", "ConvNextV2Model",
                    "ConvNextV2ForImageClassification", "ConvNextV2Backbone", "ConvNextV2PreTrainedModel",
                    "ConvNextImageProcessorFast"),
    "convnext_tf": ("TFConvNextModel", "TFConvNextForImageClassification", "TFConvNextPreTrainedModel",
                    "TFConvNextV2Model", "TFConvNextV2ForImageClassification", "TFConvNextV2PreTrainedModel"),
    "convnext_common.processing": ("ConvNextImageProcessor", "ConvNextFeatureExtractor"),
}
#: other repository files the per-model files import (not in the source distribution)
SUPPORT_FILES = ("tests/utils/test_configuration_utils.py", "utils/test_module/__init__.py",
                 "utils/test_module/custom_configuration.py", "tests/generation/test_utils.py",
                 "tests/utils/tiny_model_summary.json")
#: folders whose modules the shared mixins import (test_pipeline_mixin imports every tests/pipelines module)
SUPPORT_FOLDERS = ("tests/pipelines",)

MODULE_OF = {name: module for module, names in OUR_NAMES.items() for name in names}

_IMPORT = re.compile(r"^(?P<indent>[ \t]*)from transformers import (?P<names>\([^)]*\)|[^\n]*)", re.MULTILINE)


def rewrite_imports(source: str) -> str:
    """``from transformers import A, B`` -> the names this project has from its packages, the rest
    from transformers. Only these statements change."""

    def replace(match: re.Match) -> str:
        indent = match["indent"]
        names = [n.strip() for n in match["names"].strip("()").replace("\n", " ").split(",") if n.strip()]
        ours: dict[str, list[str]] = {}
        theirs = []
        for name in names:
            module = MODULE_OF.get(name.split(" as ")[0].strip())
            (ours.setdefault(module, []) if module else theirs).append(name)
        lines = [f"{indent}from {module} import {', '.join(ns)}" for module, ns in ours.items()]
        if theirs:
            lines.append(f"{indent}from transformers import {', '.join(theirs)}")
        return "\n".join(lines)

    return _IMPORT.sub(replace, source)


def download_sdist(version: str, into: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", f"transformers=={version}", "--no-deps",
                    "--no-binary", ":all:", "-d", str(into)], check=True)
    return next(into.glob(f"transformers-{version}.tar.gz"))


def extract_mixins(sdist: Path, tests: Path) -> list[str]:
    names = []
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py") and member.isfile():
                (tests / parts[2]).write_bytes(tar.extractfile(member).read())
                names.append(parts[2])
    return names


def model_test_sources(version: str, tests_from: Path | None) -> dict[str, str]:
    """Each per-model test file's text, from a checkout or from the release tag's archive; files
    the release does not have (TF tests after transformers dropped TensorFlow) are left out."""
    found: dict[str, str] = {}
    if tests_from is not None:
        for rel in MODEL_TEST_FILES + SUPPORT_FILES:
            path = tests_from / rel
            if path.is_file():
                found[rel] = path.read_text()
        for folder in SUPPORT_FOLDERS:
            for path in sorted((tests_from / folder).glob("*.py")):
                found[path.relative_to(tests_from).as_posix()] = path.read_text()
        return found
    url = f"https://codeload.github.com/huggingface/transformers/tar.gz/refs/tags/v{version}"
    with urllib.request.urlopen(url, timeout=120) as response:
        data = response.read()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for member in tar.getmembers():
            rel = "/".join(Path(member.name).parts[1:])
            if rel in MODEL_TEST_FILES + SUPPORT_FILES or str(Path(rel).parent) in SUPPORT_FOLDERS:
                found[rel] = tar.extractfile(member).read().decode()
    return found


_PIPELINE_IMPORT = re.compile(r"^from \.pipelines\.(?P<module>\w+) import (?P<name>\w+)", re.MULTILINE)


def write_stand_ins(work: Path) -> list[str]:
    """Stand-ins for repository-only modules a checkout lacks: each ``tests/pipelines`` module that
    test_pipeline_mixin imports gets a module defining the imported class with no tests (so the
    pipeline tests of the per-model files do not run), and an empty tiny_model_summary.json.
    Returns the paths written."""
    written = []
    mixin = work / "tests" / "test_pipeline_mixin.py"
    if mixin.is_file():
        for match in _PIPELINE_IMPORT.finditer(mixin.read_text()):
            path = work / "tests" / "pipelines" / f"{match['module']}.py"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(f"class {match['name']}:\n    pass\n")
                written.append(path.relative_to(work).as_posix())
    summary = work / "tests" / "utils" / "tiny_model_summary.json"
    if not summary.is_file():
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text("{}\n")
        written.append(summary.relative_to(work).as_posix())
    return written


def link_installed_package(python: str, work: Path) -> None:
    """test_pipeline_mixin reads ``src/transformers`` of a checkout: point it at the installed package."""
    location = subprocess.run([python, "-c", "import os, transformers; print(os.path.dirname(transformers.__file__))"],
                              check=True, capture_output=True, text=True).stdout.strip()
    (work / "src").mkdir(exist_ok=True)
    (work / "src" / "transformers").symlink_to(location, target_is_directory=True)


def run_file(python: str, work: Path, rel: str, select: str | None) -> dict[str, int]:
    report = work / (Path(rel).stem + ".xml")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(work)]), HF_HUB_OFFLINE="1",
               TRANSFORMERS_OFFLINE="1", TF_CPP_MIN_LOG_LEVEL="2")
    command = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", rel]
    if select:
        command += ["-k", select]
    subprocess.run(command, cwd=work, env=env)
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if not report.is_file():
        counts["failed"] = -1  # the file did not even collect
        return counts
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            counts["failed"] += 1
        elif case.find("skipped") is not None:
            counts["skipped"] += 1
        else:
            counts["passed"] += 1
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--python", required=True, help="a Python with transformers, torch and pytest installed")
    parser.add_argument("--version", default="4.57.6", help="the transformers release whose tests run")
    parser.add_argument("--tests-from", type=Path, help="a transformers checkout holding tests/models/convnext*")
    parser.add_argument("-k", dest="select", help="pytest -k expression")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--stand-ins", action="store_true",
                        help="write stand-ins for the repository-only modules the checkout lacks (tests/pipelines, "
                             "tiny_model_summary.json): the pipeline tests then do not run")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="transformers-conformance-"))
    try:
        tests = work / "tests"
        tests.mkdir()
        extract_mixins(download_sdist(args.version, work), tests)
        sources = model_test_sources(args.version, args.tests_from)
        for rel, text in sources.items():
            target = work / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(rewrite_imports(text) if rel in MODEL_TEST_FILES else text)
        if args.stand_ins:
            for rel in write_stand_ins(work):
                sources.setdefault(rel, "")
        package_folders = {p.parent for p in (work / r for r in sources) if p.suffix == ".py"}
        for folder in {tests, tests / "models", *(f for f in package_folders if f != work / "utils")}:
            (folder / "__init__.py").touch()
        link_installed_package(args.python, work)
        shutil.copytree(ROOT / "tests" / "fixtures" / "images", tests / "fixtures" / "images", dirs_exist_ok=True)
        rows = [(rel, run_file(args.python, work, rel, args.select)) for rel in MODEL_TEST_FILES if rel in sources]
        print(f"\ntransformers {args.version} test files against this project (-k {args.select or '(all)'}):")
        print("| file | passed | failed | skipped |\n|---|---|---|---|")
        for rel, c in rows:
            print(f"| {rel} | {c['passed']} | {c['failed'] if c['failed'] >= 0 else 'did not collect'} | {c['skipped']} |")
        missing = sorted(set(MODEL_TEST_FILES) - set(sources))
        if missing:
            print(f"not in this release: {', '.join(missing)}")
        return 0
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
