"""gRPC plumbing shared by Lyceum's gRPC services and their clients."""
