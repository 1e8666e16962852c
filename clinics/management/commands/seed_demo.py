"""``manage.py seed_demo``: the local demo tenant, idempotent.

Creates (once) the clinic "Demo Clinic" (slug ``demo``, en-US, platform
default engine), a clinic admin ``demo-admin``, a clinician
``demo-clinician``, a platform superuser ``platform`` and an API key named
``demo``. The passwords are fixed and published: demo only, which is why the
command refuses to run with DEBUG off unless forced.

The raw API key exists only when it is created; it is written to
``var/demo-api-key.txt`` (mode 600) so later runs can print it again without
storing anything but the hash in the database.

Once, too: three finished demo consultations (two Japanese, one English,
made-up patients, imported as text: no audio) so transcript search and the
MCP server have something to find, each with a SOAP note draft (the
extractive engine, run here), and MCP switched on for the clinic
(admin keys, the demo key's role). The summary prints the MCP endpoint and
the stdio command for an assistant's configuration (README, "AI
assistants (MCP)").
"""

import os
import sys
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from clinics.access import api_keys_visible_to, memberships_visible_to, system_principal
from clinics.models import Clinic, Language, Role
from clinics.services import api_key_create, clinic_create, clinic_update, membership_add
from notes.jobs import note_jobs_run_due
from notes.selectors import note_latest
from notes.services import note_generate
from sessions.models import ConsentMethod
from sessions.selectors import session_list
from sessions.services import ImportedFinal, session_import

DEMO_SLUG = "demo"
DEMO_KEY_NAME = "demo"
# Demo-only credentials, printed on every run. Never use them anywhere else.
DEMO_USERS = (
    # username, password, role in the demo clinic (None: platform superuser)
    ("demo-admin", "demo-admin-pass", Role.ADMIN),
    ("demo-clinician", "demo-clinician-pass", Role.CLINICIAN),
    ("platform", "platform-demo-pass", None),
)
# Made-up consultations (no real patient): external ref, language, (speaker, text) in order.
DEMO_CONSULTATIONS = (
    (
        "demo-ja-headache",
        Language.JA_JP,
        (
            ("clinician", "今日はどうされましたか。"),
            ("patient", "先週の火曜日から頭痛がひどくて、夜も眠れません。"),
            ("clinician", "熱や吐き気はありますか。"),
            ("patient", "熱はありませんが、少し吐き気があります。"),
            ("clinician", "鎮痛薬を出しますので、一週間後にもう一度来てください。"),
        ),
    ),
    (
        "demo-ja-cough",
        Language.JA_JP,
        (
            ("clinician", "咳はいつからですか。"),
            ("patient", "三日前から咳と発熱があります。"),
            ("clinician", "喉の痛みや息苦しさはありますか。"),
            ("patient", "喉が少し痛いです。息苦しさはありません。"),
        ),
    ),
    (
        "demo-en-chest-pain",
        Language.EN_US,
        (
            ("clinician", "What brings you in today?"),
            ("patient", "I have had chest pain since last Tuesday, mostly at night."),
            ("clinician", "Does the pain spread to your arm or jaw?"),
            ("patient", "No, but I also get a headache in the mornings."),
            ("clinician", "Let's do an ECG today and check your blood pressure."),
        ),
    ),
)


class Command(BaseCommand):
    help = "Create the demo clinic, users and API key (idempotent). Demo passwords: local use only."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--force", action="store_true", help="run even with DEBUG off (the passwords are public: demo only)"
        )
        parser.add_argument("--key-file", default=str(Path(settings.BASE_DIR) / "var" / "demo-api-key.txt"))

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG and not options["force"]:
            raise CommandError("seed_demo creates users with published passwords; needs DEBUG=1 or --force.")
        key_file = Path(options["key_file"])
        with transaction.atomic():
            clinic = Clinic.objects.filter(slug=DEMO_SLUG).first() or clinic_create(
                name="Demo Clinic", slug=DEMO_SLUG, default_language=Language.EN_US
            )
            for username, password, role in DEMO_USERS:
                self._ensure_user(clinic, username, password, role)
            raw_key = self._ensure_api_key(clinic, key_file)
            self._ensure_consultations(clinic)
            self._ensure_notes(clinic)
        clinic.refresh_from_db()  # clinic_update saved its own copy of the row
        self._print_summary(clinic, raw_key, key_file)

    def _ensure_user(self, clinic: Clinic, username: str, password: str, role: str | None) -> None:
        users = get_user_model()._default_manager
        user = users.filter(username=username).first()
        if user is None:
            if role is None:
                user = users.create_superuser(username=username, password=password, email="")
            else:
                # A clinic admin signs in to /admin/ (scoped to the clinic), so is_staff.
                user = users.create_user(username=username, password=password, is_staff=role == Role.ADMIN)
        members = memberships_visible_to(system_principal(clinic, label="seed_demo"))
        if role is not None and not members.filter(user=user).exists():
            membership_add(clinic=clinic, user=user, role=role)

    def _ensure_api_key(self, clinic: Clinic, key_file: Path) -> str | None:
        """The raw demo key if it is known (just created, or in the key file
        and still matching an active key named "demo")."""
        keys = api_keys_visible_to(system_principal(clinic, label="seed_demo"))
        active = keys.filter(name=DEMO_KEY_NAME, revoked_at__isnull=True).first()
        if active is not None:
            saved = key_file.read_text().strip() if key_file.is_file() else ""
            return saved if saved.startswith(f"vai_{active.prefix}_") else None
        _key, raw = api_key_create(clinic=clinic, role=Role.ADMIN, name=DEMO_KEY_NAME)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(raw + "\n")
        return raw

    def _ensure_consultations(self, clinic: Clinic) -> None:
        """Once: the demo consultations, and MCP switched on with them (an
        admin who switches it off later keeps it off)."""
        principal = system_principal(clinic, label="seed_demo")
        if session_list(principal=principal, external_ref=DEMO_CONSULTATIONS[0][0]).exists():
            return
        for external_ref, language, lines in DEMO_CONSULTATIONS:
            finals = [
                ImportedFinal(
                    segment_id=f"{external_ref}-{n}", start_ms=n * 4000, end_ms=n * 4000 + 3500, text=text, speaker=who
                )
                for n, (who, text) in enumerate(lines)
            ]
            session_import(
                principal=principal,
                language=language,
                external_ref=external_ref,
                finals=finals,
                consent_method=ConsentMethod.VERBAL,
            )
        clinic_update(clinic=clinic, actor=principal, mcp_enabled=True)

    def _ensure_notes(self, clinic: Clinic) -> None:
        """Each demo consultation has a note draft (made here, by the job
        itself, so the console shows one on the first page load)."""
        principal = system_principal(clinic, label="seed_demo")
        for external_ref, _language, _lines in DEMO_CONSULTATIONS:
            for session in session_list(principal=principal, external_ref=external_ref):
                if note_latest(principal=principal, session=session) is None:
                    note_generate(principal=principal, session=session)
        note_jobs_run_due()

    def _print_summary(self, clinic: Clinic, raw_key: str | None, key_file: Path) -> None:
        base = f"http://127.0.0.1:{settings.PORT}"
        lines = [
            "",
            "VoiceAI demo is ready (DEMO CREDENTIALS - local use only, never in production):",
            f"  App:          {base}/",
            f"  Admin:        {base}/admin/",
            f"  API docs:     {base}/api/v1/docs/",
            f"  Clinic:       {clinic.name} (slug {clinic.slug}, {clinic.default_language})",
        ]
        for username, password, role in DEMO_USERS:
            what = f"{role} of {clinic.slug}" if role else "platform staff (superuser)"
            lines.append(f"  User:         {username} / {password}  ({what})")
        if raw_key:
            lines.append(f"  API key:      {raw_key}  (admin role; also in {key_file})")
        else:
            lines.append(
                f"  API key:      a key named {DEMO_KEY_NAME!r} exists; its raw value was shown when it was created "
                f"and is not stored (revoke it in /admin/ and run seed_demo again for a new one)"
            )
        lines.append(f"  Try:          curl -H 'Authorization: Api-Key <key>' {base}/api/v1/sessions/")
        manage = Path(settings.BASE_DIR) / "manage.py"
        lines.append(
            f"  MCP:          {'on' if clinic.mcp_enabled else 'OFF (PATCH /api/v1/clinic/ mcp_enabled)'} for "
            f"{clinic.slug}; HTTP {base}/mcp with the header 'Authorization: Api-Key <key>'"
        )
        lines.append(
            f"                stdio: VOICEAI_API_KEY=<key> DEBUG=1 {sys.executable} {manage} mcp "
            "(Claude Desktop: README, 'AI assistants (MCP)')"
        )
        engine = clinic.transcription_engine or settings.TRANSCRIPTION_ENGINE
        if engine == "local":
            lines.append(
                "  Speech:       the offline engine (pocketsphinx) recognises ENGLISH ONLY; Japanese needs the aws "
                "engine (TRANSCRIPTION_ENGINE=aws, or the clinic's engine in /admin/)"
            )
        else:
            lines.append(f"  Speech:       engine {engine!r}")
        self.stdout.write("\n".join(lines))
