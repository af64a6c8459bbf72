"""Benchmarks of tripletlab against its peers (scripts; results in benchmarks/results/)."""
