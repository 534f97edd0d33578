"""Tests of the application (convnext_app, the `convnext` command): the commands, bulk runs, training and
pre-training, the embedded model, runtimes."""
