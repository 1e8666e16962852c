"""``manage.py create_clinic --name NAME --slug SLUG [--language ja-JP|en-US]``"""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from clinics.models import Language
from clinics.services import clinic_create
from voiceai.errors import DomainError


class Command(BaseCommand):
    help = "Create a clinic (tenant) with its default quota."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--slug", required=True, help="lowercase letters, digits and hyphens")
        parser.add_argument("--language", default=Language.JA_JP, choices=Language.values)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            clinic = clinic_create(name=options["name"], slug=options["slug"], default_language=options["language"])
        except DomainError as exc:
            raise CommandError(f"{exc.code}: {exc.message} {exc.details or ''}".strip()) from None
        self.stdout.write(f"Created clinic {clinic.slug} ({clinic.name}, {clinic.default_language}) id={clinic.pk}")
