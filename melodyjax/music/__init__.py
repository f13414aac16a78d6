"""Symbolic music without JAX: note events, MIDI files, keys, tokens."""
