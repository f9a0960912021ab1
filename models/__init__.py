"""Recommendation models, each split into item encoder, user encoder and scorer (see models/base.py)."""
