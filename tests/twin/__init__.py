"""Tests of the digital-twin samples."""
