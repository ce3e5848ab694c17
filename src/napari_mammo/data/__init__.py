"""From records to model inputs: preprocessing, patches and their labels, augmentation, splits."""
