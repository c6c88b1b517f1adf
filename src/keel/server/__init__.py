"""The HTTP gateway: the same pipeline as `keel.Client`, behind an OpenAI-compatible API.

The only package that imports the web stack (Starlette, uvicorn). Nothing in Keel imports it.
"""
