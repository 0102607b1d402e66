"""``python -m service``: the ``reid`` command (``python -m service serve ...``)."""

from service.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
