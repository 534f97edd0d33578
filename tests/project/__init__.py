"""Rules over the whole project: the layers and the core's import graph, file modes of everything the
project writes, the README's snippet."""
