from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Clinic
from sessions.lifecycle import clinic_export


class Command(BaseCommand):
    help = "Write all of a clinic's sessions (transcripts, audio, manifest) into a ZIP archive for offboarding."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", required=True, help="Clinic slug")
        parser.add_argument("--out", required=True, help="Path of the ZIP file to write")

    def handle(self, *args: Any, **options: Any) -> None:
        clinic = Clinic.objects.filter(slug=options["clinic"]).first()
        if clinic is None:
            raise CommandError(f"no clinic with slug {options['clinic']!r}")
        out = Path(options["out"])
        if out.exists():
            raise CommandError(f"{out} exists; refusing to overwrite an export")
        count = clinic_export(clinic=clinic, out_path=out)
        self.stdout.write(f"exported {count} sessions to {out}")
