"""Jinja templates of the published report and results/README.md (data only; a package so setuptools ships it plainly)."""
