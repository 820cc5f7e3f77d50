"""The run record and results.json: figures, flags, the schema and the environment block."""
