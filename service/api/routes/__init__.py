"""The HTTP API's routes, one module per resource; `service.app` mounts them."""
