"""omnipatch."""
