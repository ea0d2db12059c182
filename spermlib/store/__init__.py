"""The on-disk layout: checkpoints (weights + cards) and results (metrics, OOF predictions, tuning)."""
