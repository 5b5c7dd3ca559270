# One image for every process of a deployment (docs/operations.md, "Deploying on ECS"): the gRPC code server (the
# default command), the webserver, the daemon, `oa-dagster serve`, and each run task, whose command EcsRunLauncher
# overrides with `dagster api execute_run ...` (so no ENTRYPOINT: it would swallow that command).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DAGSTER_HOME=/opt/dagster/home

WORKDIR /opt/oa-dagster

# The project from its own files; GDAL, PROJ and GEOS come inside the pyogrio, pyproj and shapely wheels, so the
# image installs no system library.
COPY pyproject.toml README.md ./
COPY oa_dagster ./oa_dagster
RUN pip install .

# The instance and workspace of deploy/production: every setting in them is read from the environment.
COPY deploy/production/dagster.yaml deploy/production/workspace.yaml ${DAGSTER_HOME}/

# (the runs' scratch space, OA_WORK_DIR or <temp>/oa-dagster-work, is made by each run under the world-writable temp)
RUN useradd --create-home --uid 10001 oa \
    && mkdir -p "${DAGSTER_HOME}/storage" \
    && chown -R oa "${DAGSTER_HOME}"
USER oa

# 4000: code server (gRPC), 3000: webserver, 8080: oa-dagster serve
EXPOSE 4000 3000 8080
CMD ["dagster", "api", "grpc", "-m", "oa_dagster.definitions", "-h", "0.0.0.0", "-p", "4000"]
