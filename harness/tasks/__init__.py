"""Benchmark tasks: lm-eval task settings, the data rows, fixed subsets."""
