"""One module per graph node; each node is a small async function returning a partial state update."""
