"""Training: model, data, device, checkpoints, the optimizer step and the trainer. The only layer that imports torch."""
