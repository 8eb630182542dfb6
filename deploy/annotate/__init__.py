"""The annotation web app: `create_app(settings)`, served by `mlproj annotate serve`."""
