"""`manage.py chroma_server`: the Chroma server that `make run` starts beside the web server and
the worker, so every process shares one vector index (core/ai/vectors.py, docs/vectors.md)."""

import sys

from django.core.management.base import BaseCommand, CommandError

from core.ai.vectors import VectorIndexError, chroma_server_run


class Command(BaseCommand):
    help = (
        "Run a Chroma server (chroma run) on 127.0.0.1 over the vector index in var/chroma, for "
        "development: `make run` starts it under honcho. While it runs, its address is in "
        "var/chroma-server.json, where every process (web, workers, commands in another shell) "
        "finds it; it holds var/chroma.lock, so no process opens the directory itself. It "
        "listens on --port, else CHROMA_PORT, else a free port; its log is "
        "var/chroma-server.log. SIGTERM or Ctrl-C stops it and removes the record."
    )
    requires_system_checks = []  # a process supervisor: nothing of Django's it depends on

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None,
                            help="Port to listen on (default: CHROMA_PORT, else a free one).")

    def handle(self, *args, port=None, **options):
        if port is not None and not 0 < port < 65536:
            raise CommandError(f"--port must be between 1 and 65535, not {port}.", returncode=2)

        def report(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()  # under honcho stdout is a pipe: show each line as it comes

        try:
            code = chroma_server_run(port=port, report=report)
        except VectorIndexError as exc:
            raise CommandError(str(exc)) from exc
        if code:
            sys.exit(code)
