"""Lyceum's fleets of stateful replicas (predictors, samplers) as their callers use them: membership, health
watching, the rendezvous owner of a (tenant, key), failover, and the typed gRPC clients. Shared by the gateway
and by jobs that call predictors or samplers."""
