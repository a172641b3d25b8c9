"""Linkage: one-key transfer and three-way calls between the 12345 hotline and the 110 desk."""

__version__ = "0.1.0"
