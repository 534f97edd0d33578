"""``convnext convert`` (``tools/convert_weights.py`` runs this command): the converter's command line
is in :mod:`convnext_app.convert`, imported when the command is chosen."""

from __future__ import annotations

import argparse

HELP = "convert a checkpoint (transformers, timm, official, torchvision, keras) to a hub folder"
DESCRIPTION = ("Convert a ConvNeXt checkpoint into a hub-layout folder (config.json, model.safetensors, "
               "tf_model.h5) that both twins and transformers load. INPUT may be a hub id (a transformers or timm "
               "repo). Example: convnext convert timm/convnext_tiny.fb_in1k OUT")
EPILOG = None


def add_arguments(p: argparse.ArgumentParser) -> None:
    from convnext_app.convert import add_convert_arguments

    add_convert_arguments(p)


def run(args: argparse.Namespace) -> int:
    from convnext_app.convert import run_convert

    return run_convert(args)
