"""The gateway the browser tests serve with gunicorn: the real app, with the fake engines (set by
INFERBASE_ENGINES_FACTORY) and the fake router so `model: "auto"` routes."""

from serving import create_app
from serving.testing.fakes import FakeRouter

app = create_app({"ROUTER": FakeRouter()})
