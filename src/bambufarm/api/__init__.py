"""The HTTP API: FastAPI routers per resource (`api/<resource>.py`), authentication
dependencies (`deps.py`), shared models (`schemas.py`) and the one error-to-HTTP mapping
(`errors.py`); `app.create_app(services)` assembles them and `server.HttpServer` serves them."""
