"""The server's one HTTP listener (``[http]``): a twisted.web resource tree to which
services add their paths (HTTP upload now; BOSH and WebSocket later)."""
