"""What every training path decides alike, without a framework (numpy, PIL and the core only), so
the Keras part imports no torch: the options both ``convnext train`` paths take and their checks
(``options``), the model a run starts from (``model``), the random crop and the mixup/cutmix draws
(``augment``), the learning-rate schedule and weight-decay rule (``schedule``), the keyed random
streams (``keys``), the progress bar (``progress``) and ``convnext pretrain``'s options, images and
config (``pretraining``)."""
