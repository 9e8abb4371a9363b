"""Learning dynamics: spectra and mechanisms over training checkpoints.

- :mod:`.series`: a checkpoint series from folders, files, globs or a folder of step folders;
- :mod:`.track`: :func:`track`, the weight table (and optionally heads, head scores,
  activations, a user metric) at every checkpoint, unchanged tensors not recomputed;
- :mod:`.changepoints`: change points of each metric series with a permutation null;
- :mod:`.grokking`, :mod:`.induction`: built-in training experiments (:func:`run_experiment`);
- :mod:`.report`: the report page of a tracked run or an experiment.
"""
