"""HTTP routes: thin edges that validate, convert and delegate to a predictor, a sampler, the jobs or the
registry.

Routers carry their full path prefix themselves: FastAPI exposes only the router's own path in
`scope["route"]`, and the metrics label requests by that template.
"""

API_PREFIX = "/v1"
