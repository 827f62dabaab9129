"""The application layer: NodeService and what stamps its commands."""
