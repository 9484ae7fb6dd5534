"""Probes of a language model or adapter: seeded sampling and teacher-forced scoring (generate), collapse
figures (collapse), capability and log-prob margins (capability), the quality gate a new adapter version
passes before it is served (gate) and the evaluation's plots (plots)."""
