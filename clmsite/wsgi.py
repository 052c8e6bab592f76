import importlib
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "clmsite.settings")
application = get_wsgi_application()

# Load the URLconf and the modules views import lazily (pandas, the feature code) now, in
# each worker as it boots, rather than in the first requests it serves (~1.3 s each).
from django.urls import get_resolver  # noqa: E402

get_resolver().resolve("/")  # imports the URLconf and every view module
for module in ("modeling.features", "modeling.profiles", "modeling.insights", "customers.services.queries"):
    importlib.import_module(module)

# What is loaded now lives as long as the worker: move it out of the garbage collector's
# reach. Otherwise every full collection walks these ~200k objects (~100 ms on an idle
# core, two to three times that under load), a pause that lands on whichever request is
# running: the largest part of the tail latency measured by benchmarks/load.py.
import gc  # noqa: E402

gc.collect()
gc.freeze()
