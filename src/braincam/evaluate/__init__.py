"""braincam.evaluate."""
