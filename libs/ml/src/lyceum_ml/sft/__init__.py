"""Supervised fine-tuning: templates and loss masks (templates, examples), the base model of either kind
(base), rows -> examples (prepare) and the resumable, DDP-ready trainer (trainer)."""
