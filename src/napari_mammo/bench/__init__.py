"""Benchmarks: the models' speed and memory, in fresh processes."""
