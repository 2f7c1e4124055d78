"""Fine-tuning task families: readers, features, metrics, the training loop, and parameter-efficient training."""
