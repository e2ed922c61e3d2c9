"""Backends: the sandbox's rules over its state, one method per operation."""
