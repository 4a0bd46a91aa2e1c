"""The operator UI: server-rendered page shells, native ES modules and Web Components.

The server renders a small shell per page (who is signed in, which component to mount) from
a string template with every value escaped; the components fetch their data from the REST API
and keep it live over the WebSocket. No build step and no third-party files: what is in
`static/` is what the browser runs.
"""
