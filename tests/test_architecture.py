"""The dependency rule (docs/architecture.md) holds: import-linter's
contract in pyproject.toml, the same check `make lint` runs."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_it_keeps_the_layers_transcription_sessions_clinics_voiceai():
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "KEPT" in result.stdout and "BROKEN" not in result.stdout


_WRITES = {"create", "update", "get_or_create", "update_or_create"}


def _status_writes(path: Path) -> list[int]:
    """Lines that assign a session's ``status``: ``x.status = ...`` or a
    ``status=`` keyword of a create/update call."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Attribute) and t.attr == "status" for t in targets):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _WRITES
            and any(k.arg == "status" for k in node.keywords)
        ):
            lines.append(node.lineno)
    return lines


def test_it_assigns_session_status_only_in_the_sessions_services():
    owner = ROOT / "sessions" / "services.py"
    found = {
        f"{path.relative_to(ROOT)}:{line}"
        for package in ("voiceai", "clinics", "sessions", "transcription")
        for path in (ROOT / package).rglob("*.py")
        if "migrations" not in path.parts and path != owner
        for line in _status_writes(path)
    }
    assert found == set()
    assert _status_writes(owner)  # the check does see assignments
