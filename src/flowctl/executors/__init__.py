"""Step executors: one module per step type, behind one small interface."""
