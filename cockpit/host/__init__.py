"""What touches the host on the cockpit's behalf: the sandbox agent code runs in, git and file access
hardened against trees an agent shaped, and the cockpit's own temporary directories.

A leaf layer (docs/architecture.md): it imports nothing else of the cockpit, so the agents' tools,
the factory and the demo builder all stand on it."""
