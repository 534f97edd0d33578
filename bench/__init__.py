"""Benchmarks: they report timings; tests never assert them."""
