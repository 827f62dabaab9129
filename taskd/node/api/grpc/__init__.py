"""The gRPC API: handlers, the strict wire check, the server, workers."""
