"""The README's "Tenants from the command line" block, run as written in a
shell with none of the test settings' environment (no DEBUG, no
SECRET_KEY): what a newcomer pastes after `make run` must work."""

import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# The venv is already installed: make must not reinstall it from here.
MAKE_SKIP_INSTALL = "make -o .venv/.installed-runtime "


def _readme_block(heading: str) -> list[str]:
    text = (REPO / "README.md").read_text()
    section = text.split(heading, 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no sh block under {heading}"
    return [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]


@pytest.mark.timeout(180)
def test_it_runs_the_readmes_tenant_commands_as_written(tmp_path):
    database = tmp_path / "db.sqlite3"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{database}",
        "MEDIA_ROOT": str(tmp_path / "media"),
    }
    lines = _readme_block("### Tenants from the command line")
    assert any("add_member" in line for line in lines)
    outputs = []
    for line in lines:
        command = line.replace("make ", MAKE_SKIP_INSTALL, 1) if line.startswith(("make ", "echo ")) else line
        command = command.replace("| make ", "| " + MAKE_SKIP_INSTALL)
        done = subprocess.run(
            ["bash", "-c", command], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
    # The API key's raw value is alone on the last line of its command.
    assert outputs[1].rstrip("\n").splitlines()[-1].startswith("vai_")
    with sqlite3.connect(database) as db:
        clinic = db.execute("select id, default_language from clinics_clinic where slug = 'sakura'").fetchone()
        assert clinic is not None and clinic[1] == "ja-JP"
        member = db.execute(
            "select m.role from clinics_membership m join auth_user u on u.id = m.user_id "
            "where u.username = 'dr-sato' and m.clinic_id = ?",
            (clinic[0],),
        ).fetchone()
        assert member == ("clinician",)
