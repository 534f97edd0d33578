"""Checkpoint I/O and conversion, on numpy arrays: no framework is imported here at import time."""

from .io import load_state_dict, save_safetensors, find_weights_file, CheckpointError
from .matching import match_state_dict, LoadReport

__all__ = ["load_state_dict", "save_safetensors", "find_weights_file", "CheckpointError",
           "match_state_dict", "LoadReport"]
