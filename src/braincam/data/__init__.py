"""braincam.data."""
