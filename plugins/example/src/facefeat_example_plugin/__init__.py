"""An example third-party facefeat plugin."""

__version__ = "0.1.0"
