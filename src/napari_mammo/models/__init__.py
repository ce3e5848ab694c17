"""Models: the CNNI-BCC patch classifier and the IDBLL SSD detector (torch imported here only)."""
