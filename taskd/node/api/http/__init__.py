"""The REST API: the Starlette app, origin guard, server, HTTP workers."""
