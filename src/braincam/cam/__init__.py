"""braincam.cam."""
