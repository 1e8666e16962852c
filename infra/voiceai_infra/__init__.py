"""Constructs of the VoiceAI stack, one module per concern."""
