# syntax=docker/dockerfile:1.7
# The modelyard serving image: the `[serving]` extra only (no Airflow, no Great Expectations,
# no matplotlib, mlflow-skinny instead of the MLflow server) and code only. Models are never
# baked in: a pod pulls the models its plan names from the MLflow registry at start, warms
# them up and only then reports ready (see helm/modelyard-serving).
#
#   docker build -t ghcr.io/modelyard/modelyard-serving:0.1.0 .
ARG PYTHON_VERSION=3.11
# EXTRAS=serving,s3 adds s3fs: pods that ship their prediction log to an
# object store (the chart's predictionLog.url).
ARG EXTRAS=serving

FROM python:${PYTHON_VERSION}-slim-bookworm AS build
ARG EXTRAS
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/modelyard
ENV PATH=/opt/modelyard/bin:$PATH
WORKDIR /src
# Dependencies first (pinned by constraints.txt), so code changes reuse this layer: an empty
# stand-in package with the real metadata resolves the [serving] extra, then leaves.
COPY constraints.txt setup.cfg pyproject.toml README.md ./
RUN mkdir modelyard \
    && touch modelyard/__init__.py \
    && pip install -c constraints.txt ".[${EXTRAS}]" \
    && pip uninstall -y modelyard \
    && rm -rf modelyard build ./*.egg-info
# The code. modelyard/ holds relative links to the layer folders (modelyard/deploy ->
# ../deploy, modelyard/helm -> ../helm, ...); COPY keeps a link as a link, so the targets are
# copied beside it and the wheel build follows the links as it does in a checkout.
COPY modelyard ./modelyard
COPY core ./core
COPY pipeline ./pipeline
COPY training ./training
COPY promotion ./promotion
COPY monitoring ./monitoring
COPY deploy ./deploy
COPY plugins ./plugins
COPY dags ./dags
COPY helm ./helm
COPY modelyard.yaml constraints-runtime.txt ./
# pip and setuptools are build tools: the pod never installs anything (~25 MB).
RUN pip install --no-deps -c constraints.txt . \
    && python -c "import modelyard.deploy.serving.server, modelyard.deploy.serving.check" \
    && python -m compileall -q /opt/modelyard/lib \
    && python -m pip uninstall -y -q pip setuptools

FROM python:${PYTHON_VERSION}-slim-bookworm
# libgomp: xgboost's OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 modelyard \
    && useradd --system --uid 10001 --gid 10001 --home-dir /tmp --shell /usr/sbin/nologin modelyard \
    && mkdir -p /var/cache/modelyard /etc/modelyard \
    && chown 10001:10001 /var/cache/modelyard
COPY --from=build /opt/modelyard /opt/modelyard
ENV PATH=/opt/modelyard/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp \
    OMP_NUM_THREADS=1 \
    MODELYARD_SERVE_MODEL_CACHE=/var/cache/modelyard \
    MODELYARD_SERVE_ALLOW_PICKLE=0 \
    MODELYARD_SERVE_ALLOWED_FUNCTION_MODULES=
# Non-root, numeric, so Kubernetes can check runAsNonRoot (the chart runs as 10001 too).
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
ENTRYPOINT ["modelyard"]
CMD ["serve", "--plan", "/etc/modelyard/plan.yaml", "--host", "0.0.0.0", "--port", "8000"]
