"""Sparse autoencoders on a model's activations, and what their features say about domains.

- architectures (one file each, :mod:`spectrascope.sae.registry`): ``relu`` (L1),
  ``topk`` (+AuxK), ``batch_topk``, ``jumprelu``; weights under SAELens's names;
- :func:`~spectrascope.sae.train.train_sae`: train on an (n, d) array, an activation store
  (:mod:`spectrascope.sae.store`) or a model site over corpora;
- :func:`~spectrascope.sae.saelens_io.load_sae` / :func:`~spectrascope.sae.saelens_io.save_sae`:
  SAELens folders (cfg.json + sae_weights.safetensors), both ways;
- :func:`~spectrascope.sae.evaluate.evaluate_sae`: MSE, explained variance, L0, dead and dense
  features, downstream loss with the reconstruction spliced in;
- :func:`~spectrascope.sae.features.sae_features`: per-domain frequency, specificity,
  sensitivity, max-activating examples, promoted tokens;
- :mod:`spectrascope.sae.bridge`: spectra of the dictionary, overlap of domain features with
  the weights' power-law tails, feature vs head / eigenmode ablation.
"""
