"""AMP-BNN."""
