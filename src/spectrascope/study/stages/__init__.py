"""The stages of ``spectrascope study``, each a :class:`~spectrascope.study.stage.Stage` that
declares the tables it reads and writes (see :data:`STAGES` for the order)."""
