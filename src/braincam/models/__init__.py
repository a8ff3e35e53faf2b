"""braincam.models."""
