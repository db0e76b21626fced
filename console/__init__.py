"""The scan-root console: a results store and its HTTP API (install `scan-root[console]`)."""
