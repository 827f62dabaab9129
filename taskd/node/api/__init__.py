"""What clients touch: shared input checks and presenters, gRPC and HTTP."""
