"""The in-memory runtime and the pieces the distributed adapter reuses (graph, routing, executor)."""
