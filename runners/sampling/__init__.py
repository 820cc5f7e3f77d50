"""Sampling the server: PSS, USS, RSS and CPU of every process of its tree, from /proc."""
