"""What every model shares: devices and torchrun, progress events, weights files."""
