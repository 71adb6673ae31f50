"""The tunings: one module each (:mod:`.base` says what a tuning is), named by the registry."""
