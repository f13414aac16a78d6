"""Compiled LSTM kernels behind the LSTM stack's interface (XLA FFI, CPU)."""
