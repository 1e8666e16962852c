"""The one way async code runs ORM work: ``db_async(fn)(...)``."""

from asgiref.sync import sync_to_async
from django.db import close_old_connections


def db_async(fn):
    """``fn`` as a coroutine function run on the shared thread pool (not the
    single thread-sensitive executor, so sessions don't queue behind each
    other). Connection hygiene runs *inside* the call: asgiref runs the
    function in a copied context, where ``database_sync_to_async``'s own
    clean-up does not see the connection the function used; and threads of
    the pool live on, so a connection left open would outlive its request."""

    def call(*args, **kwargs):
        close_old_connections()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return sync_to_async(call, thread_sensitive=False)
