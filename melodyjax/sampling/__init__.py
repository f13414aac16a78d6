"""Generation as tokens: the jitted sampler and restoring a run for it."""
