"""`cnn`, the command line: a thin layer of options over the library.

`app` holds the application's manners (help, error lines, exit statuses), `options` the
vocabulary every command shares, `commands` the commands themselves.
"""

from cnncli.cli import commands  # noqa: F401  (registers the commands on `app`)
from cnncli.cli.app import app, main

__all__ = ["app", "main"]
