"""The one train step assembled from a config, the core parts and a curriculum
(``experiment``), and run for several seeds on one or many devices (``parallel``)."""
