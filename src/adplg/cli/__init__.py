"""The ``adplg`` command line: one module per command (or group of commands); ``main`` builds the parser."""
