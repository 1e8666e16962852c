"""Property-based run of the whole OpenAPI schema against a real server
(schemathesis): every operation, with the three principals, with valid and
invalid input, on real object ids of clinic A as well as made-up ones. No
answer may be a 5xx.

Bounded for CI: FUZZ_EXAMPLES (default 10) examples per operation, principal
and generation mode, derandomized so a failure reproduces. Raise it locally
(``FUZZ_EXAMPLES=200``) for a deeper run."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from clinics.models import ApiKey, Role
from clinics.services import api_key_create
from sessions.models import ConsultationSession, SessionStatus, TranscriptSegment
from tests.servers import requires_shared_database

pytestmark = [requires_shared_database(), pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))


def _clinic_a_ids(clinic_a, clinician_a) -> dict[str, str]:
    """Real ids of clinic A's objects, per path prefix: the server then runs
    its real code paths, not only the 404 of a random id. The key here is
    not one the principals sign in with, so revoking it locks nobody out."""
    session = ConsultationSession.objects.create(
        clinic=clinic_a, created_by=clinician_a, language="en-US", engine="fake", status=SessionStatus.ENDED
    )
    TranscriptSegment.objects.create(
        clinic=clinic_a, session=session, segment_id="s1", start_ms=0, end_ms=900, text="fuzz", is_final=True
    )
    spare_key, _ = api_key_create(clinic=clinic_a, role=Role.CLINICIAN, name="fuzz target")
    return {
        "/api/v1/sessions/": str(session.pk),
        "/api/v1/clinic/members/": str(clinician_a.memberships.get().pk),
        "/api/v1/clinic/api-keys/": str(spare_key.pk),
        "/api/v1/clinics/": str(clinic_a.pk),
    }


def _fixed_id(path: str, ids: dict[str, str]) -> str | None:
    return next((value for prefix, value in ids.items() if path.startswith(prefix)), None)


def test_it_answers_no_input_with_a_server_error(
    transactional_db, server_factory, clinic_a, clinician_a, api_key_a_admin, api_key_a_clinician, api_key_b
):
    server = server_factory()
    ids = _clinic_a_ids(clinic_a, clinician_a)
    assert ApiKey.objects.filter(clinic=clinic_a).count() == 3
    schema = schemathesis.openapi.from_url(f"{server.url}/api/v1/schema/?format=json")
    principals = {"admin_a": api_key_a_admin, "clinician_a": api_key_a_clinician, "user_b": api_key_b}
    failures: list[str] = []
    skipped: list[str] = []
    timings: list[tuple[float, str]] = []
    calls = 0
    http = requests.Session()

    def fuzz(strategy: Any, name: str, raw_key: str) -> None:
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def run(case: Any) -> None:
            nonlocal calls
            calls += 1
            response = case.call(
                base_url=server.url, session=http, headers={"Authorization": f"Api-Key {raw_key}"}, timeout=30
            )
            if response.status_code >= 500:
                failures.append(
                    f"{name} {case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r} "
                    f"body={str(case.body)[:200]!r} → {response.status_code}: {response.text[:300]}"
                )

        try:
            run()
        except Unsatisfiable:
            # Negative mode on an operation with nothing to get wrong
            # (no parameters, no body): there is no invalid input to send.
            skipped.append(name)

    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20, [op.label for op in operations]
    started = time.monotonic()
    for operation in operations:
        # Object paths get one of clinic A's real ids, for every principal
        # (clinic B's must get 404s); made-up ids come with the invalid input.
        fixed = {"id": _fixed_id(operation.path, ids)} if "{id}" in operation.path else None
        for name, raw_key in principals.items():
            fuzz(operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=fixed), name, raw_key)
        # Invalid input is refused before anyone's data is looked at: one principal is enough.
        fuzz(operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), "admin_a", principals["admin_a"])
        timings.append((round(time.monotonic() - started, 1), operation.label))
    assert calls >= len(operations) * len(principals) * EXAMPLES, (calls, timings)
    assert not failures, "\n".join(failures[:30]) + f"\n({len(failures)} in all)\n" + server.output()[-3000:]
