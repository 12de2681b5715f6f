"""One router module per area of the admin API. Each has `router(runtime) -> APIRouter`; the
app (admin/app.py) includes every router in ROUTERS behind the admin token."""
