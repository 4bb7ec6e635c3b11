"""From scores to verdicts: intervals, claims, comparison, regression checks."""
