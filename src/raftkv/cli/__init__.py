"""Command-line entry points: they parse arguments and call into the library."""
