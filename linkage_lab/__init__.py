"""Test and benchmark tooling of Linkage: the lab, the scenario harness and the benchmarks. Never imported by
the product package `telephony` and not part of its production image."""
