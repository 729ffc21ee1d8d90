"""qbo_sync_db: the Python that runs inside PostgreSQL (PL/Python).

The installer stores these modules in qbo_sync.python_module; qbo_sync.python_setup() imports
them from there. Every function takes `plpy` as its first argument, so the code is testable
outside the database with a stand-in.
"""

__version__ = "0.4.0"
