"""Tests of the framework-free core (convnext_common): config, image processor, checkpoint formats and
conversion, hub ids and loading, named sizes, licences. Loading and conversion are checked through both
twins against the writers' own outputs."""
