"""Running a bench: the runner, its resumable journal, the memory preflight."""
