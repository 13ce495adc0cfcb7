"""The LangGraph workflow: state, graph wiring, one module per node, routing."""
