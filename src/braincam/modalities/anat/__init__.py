"""modalities/anat."""
