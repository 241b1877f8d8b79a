"""Inference over whole recordings: sliding windows, fold averaging, writers."""
