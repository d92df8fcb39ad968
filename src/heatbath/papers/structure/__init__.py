"""Structure-preserving experiments (:mod:`.experiments`) and ``heatbath structure``
(:mod:`.structure_cli`)."""
