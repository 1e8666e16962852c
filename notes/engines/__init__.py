"""Note engines by name: ``extractive`` (offline rules) and ``bedrock``
(Amazon Bedrock's Converse API)."""

from notes.engines.base import NoteEngine


def get_note_engine(name: str) -> NoteEngine:
    if name == "bedrock":
        from notes.engines.bedrock import BedrockNoteEngine

        return BedrockNoteEngine.from_settings()
    if name == "extractive":
        from notes.engines.extractive import ExtractiveNoteEngine

        return ExtractiveNoteEngine()
    raise ValueError(f"unknown note engine {name!r}")
