"""Data readers: RecBole atomic files, MIND logs and synthetic generators."""
