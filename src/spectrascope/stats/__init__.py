"""The statistics a reviewer asks for: bootstrap intervals over texts, multiple-testing q-values."""
