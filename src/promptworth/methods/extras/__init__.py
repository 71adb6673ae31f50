"""The extras: what a method adds to its input or its scores (calibration, demonstrations)."""
