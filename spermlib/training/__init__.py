"""Training one cross-validation fold, comparing recipes on inner validation."""
