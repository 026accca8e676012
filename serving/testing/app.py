"""The gateway the browser tests serve with gunicorn: the real app, with the fake engines (set by
INFERBASE_ENGINES_FACTORY) and the fake router so `model: "auto"` routes; logs configured as
`serving.wsgi` configures them."""

from serving import create_app, logs
from serving.testing.fakes import FakeRouter

logs.configure()

app = create_app({"ROUTER": FakeRouter()})
