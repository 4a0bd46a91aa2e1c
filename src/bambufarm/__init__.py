"""bambufarm: a self-hosted print-farm server for Bambu Lab printers."""

__version__ = "0.1.0"
