"""Running a bench from start to end: its options and orchestration (bench.py), one task and its record
(runner.py), the audit of a record, the console."""
