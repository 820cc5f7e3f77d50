"""The servers that serve the app, the measurement of what they cost, and the
benchmark driver."""
