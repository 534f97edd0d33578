"""Tests of the PyTorch twin (convnext_pt): the model against transformers and the fixtures, its hub
folders, Auto classes, fast processor, FCMAE, exports (ONNX, torch.export), low precision and the client
libraries users apply to it."""
