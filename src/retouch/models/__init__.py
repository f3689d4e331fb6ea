"""Weights, checkpoints and families: the only package that knows them."""
