"""Benchmarks of SAE quality: synthetic ground truth and downstream evaluation on the real model."""
