"""Activation spectra and the energy landscape: what a model does with a domain's text."""
