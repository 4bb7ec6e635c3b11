"""Published results: README tables, CSV, plots, the HTML report."""
