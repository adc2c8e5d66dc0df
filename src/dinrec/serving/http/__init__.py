"""The HTTP side of serving (the 'serve' extra): the FastAPI app over a RankingService.

- app: create_app, the routes and their error shape.
- rank_route: POST /v1/rank's well-formed requests answered in pure ASGI (the hot path).
- middleware: the guard timing and counting every request, the API key, the body cap.
- schemas: the request and response bodies (pydantic), which document the API.
- prometheus: the server's metrics in the Prometheus text format.
- connections, workers: uvicorn's connection limits and `dinrec serve --workers N`.
"""
