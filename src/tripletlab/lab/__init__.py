"""The optimisation lab: gradient descent on the triplet loss for linear embeddings."""
