"""Small helpers on torch.fx graphs shared by the passes (evaluation, node queries)."""
