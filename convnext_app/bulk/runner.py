"""The bulk loop: decode in workers, run the model batch by batch, append each batch's rows to the
part, show progress; under torchrun each rank does its share and rank 0 writes the output."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from . import outputs
from .loading import default_workers, iter_batches
from .outputs import Counts, OutputError, Row
from .sharding import Shard

TASKS = ("predict", "embed")


class ImageFailed(OSError):
    """``--strict``: an image could not be used; the message names it and why."""


@dataclass
class BulkJob:
    """What ``predict --output`` / ``embed`` do: ``task`` (``"predict"`` or ``"embed"``) on ``paths``
    with ``model`` (a folder or hub id), results to ``output`` (format by its extension)."""

    task: str
    model: str | os.PathLike
    paths: Sequence[str]
    output: str | os.PathLike
    framework: str = "pt"
    precision: str = "fp32"
    runtime: str = "torch"
    batch_size: int = 32
    workers: Optional[int] = None  # None: default_workers(); 0: decode in this process
    top_k: int = 5
    stage: Optional[int] = None
    normalize: bool = False
    resume: bool = False
    overwrite: bool = False
    strict: bool = False
    progress: bool = True


@dataclass
class BulkSummary:
    """``images`` rows in the output, ``failed`` of them errors; ``processed`` by this run (the rest
    were there before a resume). Under torchrun, rank 0's summary covers the whole output."""

    output: Path
    images: int
    failed: int
    processed: int
    rank: int = 0
    world: int = 1


def _note(message: str) -> None:
    print(f"convnext: note: {message}", file=sys.stderr)


def _check_existing(job: BulkJob, out: Path, fmt: str, shard: Shard) -> bool:
    """Whether the output is already complete for this file list (a resume with nothing left);
    an error when earlier results would be overwritten without ``--overwrite``."""
    mine = outputs.part_files(out, fmt, job.task, shard.rank, shard.world)
    finals = outputs.final_files(out, fmt)
    part_there = any(p.exists() for p in mine if p not in finals)
    final_there = out.exists()
    if job.overwrite:
        for p in mine:
            if p.exists() and p != out:
                p.unlink()
        return False
    if not job.resume:
        if final_there or part_there:
            what = out if final_there else next(p for p in mine if p.exists())
            raise OutputError(f"{what}: exists; --resume continues it, --overwrite starts over")
        return False
    if final_there and not part_there and not (outputs.in_place(fmt) and shard.world == 1):
        finished = set(_finished_paths(out, fmt, job))
        missing = [p for p in job.paths if p not in finished]
        if missing:
            raise OutputError(f"{out}: is complete without {missing[0]} (and {len(missing) - 1} more) of these "
                              f"images; write to another file or --overwrite")
        return True
    return False


def _finished_paths(out: Path, fmt: str, job: BulkJob) -> list[str]:
    if outputs.in_place(fmt):
        codec = outputs.CsvCodec(job.top_k) if fmt == ".csv" else outputs.JsonlCodec()
        lines = outputs._complete_lines(out)
        if codec.header is not None:
            next(lines, None)
        return [codec.decode(line, out)[0] for line in lines]
    return outputs.read_finished_paths(out, fmt, job.task)


def run_bulk(job: BulkJob, warn: Callable[[str], None] = _note) -> BulkSummary:
    """Run ``job``; returns the counts. Bad images become error rows (``ImageFailed`` with ``strict``)."""
    from convnext_app import inference
    from convnext_common.progress import Progress

    if job.task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {job.task!r}")
    out = Path(job.output)
    fmt = outputs.output_format(out, job.task)
    if not out.parent.is_dir():
        raise FileNotFoundError(f"{out.parent}: no such folder for the output")
    shard = Shard.from_env()
    shard.start()  # before the model: torch is imported before TensorFlow
    try:
        if _check_existing(job, out, fmt, shard):
            warn(f"{out} already holds every image; nothing to do")
            return BulkSummary(out, len(job.paths), 0, 0, shard.rank, shard.world)
        if job.task == "predict":
            model = inference.load_classifier(job.model, job.framework, job.precision, job.runtime)
            labels = model.labels
            top_k = max(1, min(job.top_k, len(labels)))
            part = outputs.open_part(out, fmt, "predict", shard.rank, shard.world, job.resume, top_k=top_k)
        else:
            model = inference.load_embedder(job.model, job.framework, job.stage, job.precision, job.runtime)
            top_k = 0
            part = outputs.open_part(out, fmt, "embed", shard.rank, shard.world, job.resume, dim=model.dim)
        processor = inference.load_processor(job.model, warn=warn if shard.rank == 0 else None)
        done = set(part.done)
        todo = [p for p in shard.take(job.paths) if p not in done]
        workers = default_workers() if job.workers is None else job.workers
        engine = "torch" if job.framework == "pt" else "pool"
        bar = Progress(job.task, len(todo), unit="img", enabled=job.progress and shard.rank == 0 and bool(todo))
        try:
            for batch in iter_batches(todo, processor, job.batch_size, workers, engine):
                rows = _rows(job, model, batch, top_k)
                if job.strict:
                    bad = next((i for i, r in enumerate(rows) if r.error is not None), None)
                    if bad is not None:
                        part.append(rows[:bad])
                        raise ImageFailed(rows[bad].error)
                part.append(rows)
                bar.update(len(rows))
        finally:
            part.close()
        bar.close()
        counts = part.counts
        shard.wait_for_all()
        if shard.rank == 0 and (shard.world > 1 or not outputs.in_place(fmt)):
            counts = outputs.finish(out, fmt, job.task, shard.world, top_k)
        return BulkSummary(out, counts.rows, counts.failed, len(todo), shard.rank, shard.world)
    finally:
        shard.stop()


def _rows(job: BulkJob, model, batch, top_k: int) -> list[Row]:
    from convnext_app.inference import softmax, top_k as best

    ok = batch.ok
    rows = [Row(p, error=e) for p, e in zip(batch.paths, batch.errors)]
    if not ok:
        return rows
    if job.task == "predict":
        tops = best(softmax(model.logits(batch.pixels)), top_k, model.labels)
        for i, top in zip(ok, tops):
            rows[i].labels = [lab for lab, _ in top]
            rows[i].probabilities = [p for _, p in top]
    else:
        vectors = model.features(batch.pixels)
        if job.normalize:
            norms = np.linalg.norm(vectors.astype(np.float64), axis=1, keepdims=True)
            vectors = (vectors / np.maximum(norms, 1e-12)).astype(np.float32)
        for i, v in zip(ok, vectors):
            rows[i].vector = v
    return rows


__all__ = ["BulkJob", "BulkSummary", "ImageFailed", "run_bulk", "Counts"]
