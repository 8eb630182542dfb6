"""One router per resource: health, models, predict, ..."""

# the routers deploy/app.py includes, in this order (one list, so that a project generated from the template can
# leave a stage's out: docs/guide/template.md)
ROUTERS = (
    'health',
    'models',
    'predict',
    'corrections',
    'jobs',  # only-with: queue
    'admin',
    'pages',
    'reports',
    'score',
)
