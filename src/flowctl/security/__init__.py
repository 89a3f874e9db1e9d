"""Secrets at rest: encryption keys and the box that uses them."""
