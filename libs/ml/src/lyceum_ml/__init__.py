"""Lyceum's models: the Developmental Foundation Model (dfm/), checkpoints and shared ML utilities."""
