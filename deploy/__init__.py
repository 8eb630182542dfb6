"""The HTTP service over `mlproj`: a FastAPI app factory (`deploy.app.create_app`), its routers and limits."""
