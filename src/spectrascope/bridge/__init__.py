"""The spectral-mechanistic bridge: where a domain lives in the weights' eigenmodes, and
whether it matters causally."""
