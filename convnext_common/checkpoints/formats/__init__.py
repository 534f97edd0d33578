"""The weights file formats, each read and written with numpy (and h5py) alone, never a framework.

- files.py: the weights files of a hub folder by name, and the reader each file name means
  (``find_weights_file``, ``load_state_dict``, ``read_canonical``, ``open_canonical``, the writers);
- safetensors.py: the project's one safetensors reader (memory-mapped or tensor by tensor) and writer;
- torch_pickle.py: ``torch.save`` files through an allow-list unpickler, and training checkpoints' entries;
- tf_h5.py: transformers' ``tf_model.h5`` <-> canonical names and layouts;
- keras_h5.py: Keras' legacy HDF5 attributes, shared by tf_model.h5 and keras-applications files;
- index.py: the one reader of a sharded checkpoint's index;
- lazy.py: ``LazyArray``, a tensor read from its file when used.
"""
