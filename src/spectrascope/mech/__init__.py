"""Mechanistic interpretability toolkit: logit lens, head scores, ablation, patching, probes, steering."""
