"""The models: the poster's CNNI-BCC and IDBLL, and screening on a pretrained backbone (network, inference)."""
