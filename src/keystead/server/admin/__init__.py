"""The admin API (`/admin/...`): keys, teams, providers, usage, events. Thin: each route calls
the service layer (keystead.control), which holds every rule.

Guarded by the admin token (`Authorization: Bearer <KEYSTEAD_ADMIN_TOKEN>`), compared in
constant time. Described by the OpenAPI document at /admin/openapi.json, browsable at
/admin/docs (Swagger UI served from a Python package, no CDN). Errors use the same OpenAI-style
envelope as the data plane.

    app.py          the factory: routers, token, error handlers, body limit (1 MiB: 413),
                    OpenAPI, docs
    auth.py         the admin token check
    errors.py       every refusal in the envelope; 405 with a correct Allow header
    params.py       path and query parameter types; durations and limits into service values
    schemas/        request and response models, one module per area; fields.py: value types
    routes/         one router per area: keys, events (+ incidents, tokens), teams, providers,
                    usage, status (+ routes), config (reload)

Adding an endpoint: its models in schemas/<area>.py (every int with a range, every str with
a length and a character set, from schemas/fields.py), its route in routes/<area>.py calling a
service; a new area is a new routes/ module added to app.ROUTERS.
"""

from keystead.server.admin.app import create_admin_app

__all__ = ["create_admin_app"]
