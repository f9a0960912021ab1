"""Offline training, evaluation and export. Importing this package does not import torch."""
