"""Corpus to training data without JAX: datasets, their build, windows, ESAC."""
