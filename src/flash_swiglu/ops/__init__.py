"""Launchers: validate, flatten, choose a config, allocate, launch; custom-op registration."""
