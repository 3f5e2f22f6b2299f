"""Adapters that put the cloud SDKs on the caller's HTTP stack, one fence per SDK.

Each module holds every private touch point of one SDK (its docstring lists them, its
``VERIFIED`` says which versions they were checked against, ``tests/test_sdk_fences.py`` pins
them) and is imported only by the resolver that needs it, so that a missing SDK costs nothing at
import time:

* :mod:`.google` -- a ``google.auth.transport.Request`` for google-auth's blocking code, which
  runs in a worker thread and hops back to the event loop for each request;
* :mod:`.azure` -- an azure-core ``AsyncHttpTransport`` for azure-identity's ``aio``
  credentials (its default aiohttp transport is asyncio-only);
* :mod:`.aws` -- an aiobotocore session class whose API calls use the caller's transport.
"""
