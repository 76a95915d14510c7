"""Training and evaluation of the shipped detectors (not imported by the library itself)."""
