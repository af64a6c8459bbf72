"""Training: the Trainer, checkpoints and logging."""
