"""Out-of-fold evaluation, faithfulness of explanations, embeddings, the README report, speed."""
