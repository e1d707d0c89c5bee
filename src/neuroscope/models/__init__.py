"""Model loading, adapters, the hooked model and its activation cache."""
