"""The ASGI application: data plane, admin API, health."""
