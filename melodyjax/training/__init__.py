"""Training: state, steps, the loop, checkpoints, devices, the workdir."""
