"""What the servers run on: interpreters, per-interpreter virtual environments,
Django releases and garbage-collector modes, as matrix dimensions."""
