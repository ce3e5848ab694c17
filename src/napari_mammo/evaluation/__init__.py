"""Scoring models on labelled images: metrics, classifier and detector evaluation, review, plots."""
