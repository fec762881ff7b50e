"""Train/eval steps, the training loop, checkpointing and run outputs."""
