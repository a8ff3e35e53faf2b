"""modalities/dwi."""
