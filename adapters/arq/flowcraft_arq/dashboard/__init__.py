"""A web dashboard for distributed flowcraft runs (extra `flowcraft-arq[dashboard]`).

    from flowcraft_arq.dashboard import create_app
    app = create_app("redis://localhost:6379/0", flows=[order_flow])   # an ASGI app
    # uvicorn: `flowcraft dashboard --redis redis://... --flow myapp.flows:order_flow`

See docs/dashboard.md.
"""

from flowcraft_arq.dashboard.app import create_app

__all__ = ["create_app"]
