"""Training both models: the shared loop (devices, torchrun, progress, Stop, best weights) and each model's run."""
