"""Wire profiles: the seed job APIs' dialects over jobwire's jobs (``model.py``, ``routes.py``,
one YAML file per dialect)."""
