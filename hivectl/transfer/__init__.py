"""Objects in bulk over the protocol: export a realm as JSON lines, import it back, list and
delete by id pattern, each paced under the server's per-connection limits."""
