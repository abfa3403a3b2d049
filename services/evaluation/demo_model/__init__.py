"""A demo lab model server: a small OpenAI-compatible HTTP API with scripted profiles.

It stands in for the endpoint a lab names in its submission, so the demo and the
tests evaluate a "model" over real HTTP. It lives in this package (not deploy/)
because it is Python that ships with the project, is type-checked and imported by
the tests; it imports nothing from the evaluation service. Run it with
``python -m services.evaluation.demo_model --port 8900``.
"""
