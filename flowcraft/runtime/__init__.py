"""The in-memory runtime and what the distributed adapter reuses: graph, routing, executor."""
