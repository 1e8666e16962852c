from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from sessions.lifecycle import sessions_purge_expired, sessions_reap_abandoned, sessions_seal_stranded


class Command(BaseCommand):
    help = (
        "End live sessions abandoned for ABANDONED_SESSION_HOURS (their audio is sealed), seal ended sessions "
        "whose audio was left in parts, then erase sessions older than their clinic's retention (audit "
        "tombstones stay). Safe to run from cron."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="Count what would be erased; change nothing.")

    def handle(self, *args: Any, **options: Any) -> None:
        failed = 0
        if not options["dry_run"]:
            # First, so a session abandoned long ago is ended now and reached
            # by retention (which never touches live sessions).
            reaped = sessions_reap_abandoned()
            failed += len(reaped.failed)
            self.stdout.write(f"ended {reaped.ended} abandoned live sessions, {len(reaped.failed)} failed")
            sealed = sessions_seal_stranded()
            failed += len(sealed.failed)
            self.stdout.write(f"sealed {sealed.sealed} ended sessions left in parts, {len(sealed.failed)} failed")
        report = sessions_purge_expired(dry_run=options["dry_run"])
        failed += len(report.failed)
        verb = "would erase" if options["dry_run"] else "erased"
        self.stdout.write(
            f"{report.clinics} clinics checked, {verb} {report.erased} sessions, {len(report.failed)} failed"
        )
        if failed:
            # Non-zero so a scheduler shows the run as failed and retries.
            raise SystemExit(1)
