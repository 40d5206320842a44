"""Dataset classes in CoOp's layouts; importing this package registers every dataset module of
this folder that declares ``DATASET`` (experiments/catalog.py finds them: no list to keep)."""

import importlib

from experiments import catalog

for _source in catalog.sources(environ={}):
    if _source.module.startswith(f"{__name__}."):
        importlib.import_module(_source.module)
