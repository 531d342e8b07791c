"""Enhancers: the backends that turn a short shot prompt into a detailed caption."""
