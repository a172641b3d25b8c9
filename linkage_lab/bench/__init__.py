"""Benchmarks (`make bench`): the controller's cost against Asterisk doing the same transfer alone."""
