"""The running service: settings, the composition root, the command line."""
