"""Lyceum's predictor: the DFM served over gRPC with a per-learner KV cache over durable histories."""
