"""braincam.report."""
