"""Readers and writers: PGM, mini-MIAS folders and Info.txt, DICOM, PNG/TIFF, synthetic mammograms."""
