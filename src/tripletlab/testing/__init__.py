"""Conformance suites: check any implementation of tripletlab's losses against the definitions."""
