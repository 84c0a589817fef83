"""``python -m tickwire`` is the ``tickwire`` command."""

from .cli import main

main()
