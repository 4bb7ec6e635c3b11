"""Run records: reading and writing them, the set of runs, what makes two runs the same measurement."""
