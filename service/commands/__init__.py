"""Torch-free ``reid`` subcommands owned by a serving-only install (``serve``, ``models``)."""
