"""The REST API (`/api/v1`): the kit (calls, dispatch, errors, OpenAPI) and one module per
resource, each owning its handlers, its ROUTES and its schemas. See docs/ARCHITECTURE.md.
"""
