"""``manage.py create_api_key --clinic SLUG --role admin|clinician [--name N]``

The raw key is printed once, alone on the last line of stdout, so scripts
can take it with ``| tail -n 1``. Only its SHA-256 is stored.
"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Clinic, Role
from clinics.services import api_key_create
from voiceai.errors import DomainError


class Command(BaseCommand):
    help = "Create an API key for a clinic. The raw key is printed once, on the last line."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", required=True, help="the clinic's slug")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--name", default="integration", help="a label for the key (default: integration)")

    def handle(self, *args: Any, **options: Any) -> None:
        clinic = Clinic.objects.filter(slug=options["clinic"]).first()
        if clinic is None:
            raise CommandError(f"No clinic with slug {options['clinic']!r}.")
        try:
            key, raw = api_key_create(clinic=clinic, role=options["role"], name=options["name"])
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message}") from None
        self.stdout.write(
            f"Created {key.role} API key {key.prefix}… ({key.name}) for clinic {clinic.slug}. "
            "Store it now: it is not shown again."
        )
        self.stdout.write(raw)
