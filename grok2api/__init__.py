"""grok2api: an OpenAI-compatible gateway to the Grok web app."""
