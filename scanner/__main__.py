"""``python -m scanner`` runs the portprobe command line."""

from scanner.cli import entry

entry()
