"""Lyceum's sampler: interactive "token wheel" sessions over causal LMs (durable session state, per-pod KV
caches rebuilt on a miss) and streaming generation, served over gRPC."""
