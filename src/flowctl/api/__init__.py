"""HTTP surfaces: one module per spec, thin adapters over engine.service."""
