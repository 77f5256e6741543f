"""Entrypoints: the `segment` command line, the one-shot nightly job and the scheduler loop."""
