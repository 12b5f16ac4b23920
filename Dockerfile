# The gridshift worker image. Built by docker-compose.yml; runs as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY schemas ./schemas
COPY optimizer ./optimizer
COPY streams ./streams
RUN pip install . && useradd --create-home --uid 10001 gridshift
USER gridshift
ENTRYPOINT ["gridshift"]
CMD ["worker"]
