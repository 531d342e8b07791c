"""Generators: the backends that turn a planned shot into frames (found through entry points)."""
