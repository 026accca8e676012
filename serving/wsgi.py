"""WSGI entry point: ``gunicorn 'serving.wsgi:app'``."""

from serving import create_app

app = create_app()
