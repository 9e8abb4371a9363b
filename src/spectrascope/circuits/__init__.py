"""Circuits: the edge graph of a transformer, exact edge patching, EAP / EAP-IG, verified circuits,
tasks, input interactions and the spectral question (do weight spectra point to circuits?)."""
