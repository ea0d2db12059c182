"""Decode → datasets → splits → model input: everything before a model sees an image."""
