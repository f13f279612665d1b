"""Capture: named layers' outputs from one forward pass (``hooks``), token sequences as maps (``tokens``)."""
