# One image for every crisis process of docker-compose.yml (workers, dispatcher, anchor, web).
# bookworm: its postgresql-client (pg_dump 15, for `crisis backup`) matches the compose's
# postgres:15; pango is what weasyprint needs for `crisis report --format pdf`.
FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends postgresql-client libpango-1.0-0 \
       libpangoft2-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY crisis ./crisis
COPY streams ./streams
COPY playbooks ./playbooks
COPY notifiers ./notifiers
COPY web ./web
RUN pip install --no-cache-dir .
RUN useradd --system --home /var/lib/crisis crisis && mkdir -p /var/lib/crisis && chown crisis /var/lib/crisis
USER crisis
ENV CRISIS_DATA_DIR=/var/lib/crisis
EXPOSE 8000
CMD ["crisis", "web", "--host", "0.0.0.0", "--port", "8000"]
