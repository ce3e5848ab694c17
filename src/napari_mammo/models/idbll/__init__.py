"""IDBLL, the SSD lesion locator: network and inference."""
