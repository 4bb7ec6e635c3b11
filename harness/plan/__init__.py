"""`harness plan` and the fit decision: what a bench will cost here (disk, memory, time), before any download."""
