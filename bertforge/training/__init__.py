"""Training: the step and loop, optimizers and schedules, checkpoints, distributed helpers, curves."""
