"""Tests of the Keras twin (convnext_tf, convnext_keras): fixtures, parity with the PyTorch twin,
Keras model behaviour, exports, FCMAE and fit. test_any_backend.py runs on whichever Keras backend the
process has; test_backends_run.py runs it under JAX and PyTorch in processes of their own."""
