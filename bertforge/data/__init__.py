"""Pretraining data: corpus reading, indexed datasets, sentence-pair samples, masking, collation."""
