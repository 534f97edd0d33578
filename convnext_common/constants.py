"""Normalisation statistics, the one place their numbers are written (pixels rescaled to [0, 1])."""

#: The ImageNet statistics: the normalisation of the ImageNet ConvNeXts of the hub, timm, the official
#: repositories and the other peer libraries (transformers' IMAGENET_DEFAULT_*).
IMAGENET_DEFAULT_MEAN = (0.485, 0.456, 0.406)
IMAGENET_DEFAULT_STD = (0.229, 0.224, 0.225)

#: transformers' IMAGENET_STANDARD_*: the defaults of its ConvNextImageProcessor's constructor.
IMAGENET_STANDARD_MEAN = (0.5, 0.5, 0.5)
IMAGENET_STANDARD_STD = (0.5, 0.5, 0.5)
