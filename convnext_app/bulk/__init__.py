"""Predict or embed a whole collection of images: streamed, written as it goes, resumable, sharded.

``convnext predict --output FILE`` and ``convnext embed`` run here. The parts, one job each:

- :mod:`.files`: the image paths of the command's arguments (folders walked in sorted order);
- :mod:`.decoding`: one image file to its model input, or a one-line error (runs in the workers);
- :mod:`.loading`: batches of decoded images in input order from worker processes (PyTorch's
  DataLoader for the PyTorch twin, a process pool for the Keras twin on any backend), bounded prefetch;
- :mod:`.outputs`: the output formats (.jsonl, .csv, .parquet, .npy, .safetensors), written batch by
  batch, what a resume finds in them, and the merge of per-rank parts;
- :mod:`.sharding`: the rank's share of the file list under torchrun, and the wait before the merge;
- :mod:`.runner`: the loop that ties them together (:func:`run_bulk`).
"""

from .runner import BulkJob, BulkSummary, run_bulk

__all__ = ["BulkJob", "BulkSummary", "run_bulk"]
