"""Thin nn.Module wrappers over :mod:`tripletlab.functional`, activations and networks."""
