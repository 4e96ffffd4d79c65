"""``python -m scanner`` runs the portprobe command line."""

from scanner.cli import main

main()
