"""``manage.py add_member --clinic SLUG --username NAME --role clinician|admin [--email E]``

Gives a person a login to a clinic: creates the user (asking for the
password: twice on a terminal, one line from stdin otherwise, so scripts
can pipe it in) or enrols an existing one, then adds the membership through
the same service (and audit row) as the API and the admin. A clinic admin
also gets ``is_staff``, which the tenant-scoped admin site needs.
"""

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clinics.models import Clinic, Role
from clinics.services import membership_add
from voiceai.errors import DomainError


class Command(BaseCommand):
    help = "Create a clinician's or clinic admin's login (or enrol an existing user) in a clinic."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--clinic", required=True, help="the clinic's slug")
        parser.add_argument("--username", required=True)
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        clinic = Clinic.objects.filter(slug=options["clinic"]).first()
        if clinic is None:
            raise CommandError(f"No clinic with slug {options['clinic']!r}.")
        users = get_user_model()._default_manager
        username, role = options["username"], options["role"]
        user = users.filter(username=username).first()
        with transaction.atomic():
            if user is None:
                candidate = get_user_model()(username=username, email=options["email"])
                password = self._read_password()
                try:
                    validate_password(password, candidate)
                except ValidationError as exc:
                    raise CommandError("Password refused: " + " ".join(exc.messages)) from None
                user = users.create_user(username=username, email=options["email"], password=password)
                created = True
            else:
                created = False
            if role == Role.ADMIN and not user.is_staff:
                user.is_staff = True
                user.save(update_fields=["is_staff"])
            try:
                membership_add(clinic=clinic, user=user, role=role)
            except DomainError as exc:
                raise CommandError(f"{exc.code}: {exc.message}") from None
        what = "Created user" if created else "Enrolled existing user"
        self.stdout.write(f"{what} {username} as {role} of clinic {clinic.slug}.")

    def _read_password(self) -> str:
        if sys.stdin.isatty():
            first = getpass.getpass("Password: ")
            if getpass.getpass("Password (again): ") != first:
                raise CommandError("The two passwords differ.")
            return first
        password = sys.stdin.readline().rstrip("\n")
        if not password:
            raise CommandError("No password: type it when asked, or pipe it in on one line.")
        return password
