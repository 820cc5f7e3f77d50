"""Server-side helpers: the process launcher, gc hooks and server config files.

Everything here is loaded by (or runs as) the server processes themselves, so
it imports nothing beyond the standard library and the app.
"""
