"""Benchmarks: one command each, printing figures and ratios (see README)."""
