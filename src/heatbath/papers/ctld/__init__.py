"""CTLD experiments: recipes (:mod:`.recipes`) and ``heatbath ctld`` (:mod:`.ctld_cli`)."""
