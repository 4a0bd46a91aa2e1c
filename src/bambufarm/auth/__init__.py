"""Authentication and authorisation as services (no HTTP): password hashing, roles and the
`can(role, action)` table, API keys, login sessions with CSRF tokens, login rate limiting, and
the first admin. The API maps these to cookies, headers and status codes."""
