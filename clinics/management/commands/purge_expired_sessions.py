from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions.lifecycle import sessions_purge_expired


class Command(BaseCommand):
    help = "Erase sessions older than their clinic's retention (audit tombstones stay). Safe to run from cron."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be erased; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        report = sessions_purge_expired(dry_run=options["dry_run"])
        verb = "would erase" if options["dry_run"] else "erased"
        self.stdout.write(
            f"{report.clinics} clinics checked, {verb} {report.erased} sessions, {len(report.failed)} failed"
        )
        if report.failed:
            # Non-zero so a scheduler shows the run as failed and retries.
            raise SystemExit(1)
