"""Self-distillation from feedback (SDPO): the per-token loss (loss), the teacher's hindsight prompt (teacher)
and one optimizer step of a LoRA adapter over served completions (step)."""
