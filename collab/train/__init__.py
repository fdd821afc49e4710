"""The trainer, kept apart from the inference package (which never imports it)."""
