"""``last_checkpoint.pt``: model and optimizer state after an epoch, for ``--resume`` (read with
``weights_only=True``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import torch
from torch import nn

from convnext_common.config import config_class_for
from convnext_common.fileio import atomic_write_stream, atomic_write_text
from convnext_common.processing import ConvNextImageProcessor
from convnext_pt import AutoModelForImageClassification

from ..common.data import METRICS_NAME
from ..common.model import ModelSetup
from .options import TrainingError, TrainOptions
from .recipe import ModelEma


CHECKPOINT_NAME = "last_checkpoint.pt"


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int, step: int,
                    setup: ModelSetup, history: list[dict], options: TrainOptions,
                    ema: Optional[ModelEma] = None) -> None:
    """The raw weights as ``model`` (``ema`` beside them with ``--ema``) and everything else a resumed
    run cannot redraw: the optimizer's state and the step. Random draws need no state: they are keyed
    by (seed, epoch, step or sample, rank), and the optimizer steps at the end of every epoch, so no
    gradient accumulation is pending at an epoch boundary."""
    state = {
        "format": "convnext-train-checkpoint-1",
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "epoch": epoch, "step": step,
        "config_json": setup.model.config.to_json_string(),
        "processor_json": json.dumps(setup.processor.to_dict()),
        "classes": list(setup.classes), "source": setup.source, "new_head": setup.new_head,
        "history": history, "options_json": json.dumps(asdict(options)),
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    atomic_write_stream(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001  any unreadable file is one clear error
        raise TrainingError(f"{path}: not a readable training checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != "convnext-train-checkpoint-1":
        raise TrainingError(f"{path}: not a checkpoint written by convnext train")
    return state


def setup_from_checkpoint(state: dict[str, Any]) -> ModelSetup:
    d = json.loads(state["config_json"])
    config = config_class_for(d.get("model_type", "convnext")).from_dict(d)
    model = AutoModelForImageClassification.from_config(config)
    model.load_state_dict(state["model"])
    processor = ConvNextImageProcessor(**json.loads(state["processor_json"]))
    return ModelSetup(model, processor, list(state["classes"]), int(config.image_size), state["source"],
                      bool(state["new_head"]))


def save_run_folder(out: Path, model: nn.Module, processor: ConvNextImageProcessor, metrics: dict[str, Any],
                    draw: Callable[[Sequence[dict], Path], None]) -> Optional[str]:
    """The folder a finished run leaves (train and pretrain alike): the model and its processor in
    hub layout, ``metrics.json``, and ``curves.png`` drawn by ``draw`` from the epochs' records.
    Returns a note when the curves cannot be drawn (no plotting library)."""
    from convnext_app.plots import CURVES_NAME, PlotsUnavailable

    model.to("cpu").save_pretrained(out)
    processor.save_pretrained(out)
    atomic_write_text(out / METRICS_NAME, json.dumps(metrics, indent=2) + "\n")
    try:
        draw(metrics["epochs"], out / CURVES_NAME)
    except PlotsUnavailable as e:
        return f"note: {CURVES_NAME} not written: {e}"
    return None
