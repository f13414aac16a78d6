"""The Flax model: embeddings, the LSTM stack and its implementations, heads."""
