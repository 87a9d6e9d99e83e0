"""Tests for satconv; the oracle in ``oracle.py`` is independent of satconv."""
