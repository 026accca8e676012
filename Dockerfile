# The Inferbase gateway image: the API, the dashboard, the InferRoute router and the `inferbase`
# operator command. Engines are not in it: run vLLM in its own containers (vllm/vllm-openai on GPU
# hosts) and name them in the catalog. docs/deploy.md says how to run it; scripts/image_smoke.sh
# builds and smoke-tests it (or, where docker is not available, runs these same steps in a fresh
# virtualenv).
#
#   docker build -t inferbase .
#   docker run -p 8000:8000 -e INFERBASE_DATABASE_URL=... -e INFERBASE_REDIS_URL=... inferbase

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# torch's CPU build (the router's prompt embeddings run on the CPU); without this index pip would
# pull a multi-GB CUDA build. Empty: whatever index pip is configured with.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/inferbase
WORKDIR /src
COPY pyproject.toml README.md ./
COPY inferroute/ inferroute/
COPY serving/ serving/
COPY evals/ evals/
RUN /opt/inferbase/bin/pip install -U pip wheel \
 && /opt/inferbase/bin/pip install "torch==2.13.0" ${TORCH_INDEX:+--extra-index-url "$TORCH_INDEX"} \
 && /opt/inferbase/bin/pip install ".[serve]"

FROM ${PYTHON_IMAGE}
RUN useradd --system --create-home --home-dir /var/lib/inferbase --uid 10001 inferbase
COPY --from=build /opt/inferbase /opt/inferbase
COPY data/catalog.yaml /etc/inferbase/catalog.yaml
ENV PATH=/opt/inferbase/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    INFERBASE_HOME=/var/lib/inferbase \
    INFERBASE_CATALOG=/etc/inferbase/catalog.yaml \
    INFERBASE_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/inferbase-metrics \
    MLFLOW_TRACKING_URI=sqlite:////var/lib/inferbase/mlflow.db \
    MLFLOW_DISABLE_TELEMETRY=true \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false
USER inferbase
WORKDIR /var/lib/inferbase
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s \
  CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/healthz', timeout=2)"]
# `serve` migrates the database, then runs gunicorn with serving.gworker.Worker (gthread), a
# socket per worker (SO_REUSEPORT) and the hooks in serving/gconf.py
ENTRYPOINT ["inferbase"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
