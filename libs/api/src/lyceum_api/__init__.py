"""Generated gRPC/protobuf code for Lyceum's contracts in protos/ (do not edit; run `make protos`)."""
