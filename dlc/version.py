"""dlc's version, in a module of its own: the package's __init__ is the Python API, which the core must not import."""

__version__ = "0.1.0"
