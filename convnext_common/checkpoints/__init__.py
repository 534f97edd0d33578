"""Checkpoints on numpy arrays: their file formats, the libraries that write them, and the converter.
No framework is imported here.

- formats/: the weights files (safetensors, torch pickles through an allow-list, transformers'
  tf_model.h5, Keras' legacy h5, the shard index) read and written with numpy and h5py;
- sources/: one module per library whose checkpoints the converter reads (its names, refusals,
  config reading and hub metadata), listed in ``sources.SOURCES``;
- pipeline.py: the converter, step by step (read, identify, map, infer; in memory: load_converted;
  then write the folder: convert);
- canonical.py: the canonical (transformers PyTorch) layout: the config a state implies and the
  shapes a config implies; computation.py: what a source computes beyond its tensors, expressed in
  the config or refused; matching.py: canonical tensors fitted to a model's parameters;
  preprocessing.py: the preprocessor configs a folder gets; errors.py: the errors.
"""

from .canonical import count_parameters, expected_shapes, infer_config
from .errors import CheckpointError, UnsupportedCheckpointError
from .formats.files import find_weights_file, load_state_dict, save_safetensors
from .matching import LoadReport, match_state_dict
from .pipeline import TARGETS, ConversionResult, Converted, convert, load_converted
from .sources import FORMATS

__all__ = ["convert", "ConversionResult", "TARGETS", "FORMATS", "load_converted", "Converted",
           "CheckpointError", "UnsupportedCheckpointError", "load_state_dict", "save_safetensors",
           "find_weights_file", "match_state_dict", "LoadReport", "infer_config", "expected_shapes",
           "count_parameters"]
