"""The objectives: one module each (what a batch is scored by, and its loss)."""
